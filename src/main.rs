//! `livevote`: arguments and `LIVEVOTE_*` environment → `Config` → `server::run`; errors → exit
//! codes (0: stopped normally, 1: start-up or run failure, 2: usage).

use std::process::ExitCode;

use livevote::app::routes::host_names;
use livevote::config::{help, parse_args, version, Command};
use livevote::server::Server;

fn main() -> ExitCode {
    // Names or values that are not Unicode cannot be a LIVEVOTE_* setting: read them lossily,
    // so a bad value is reported (as std::env::vars would panic instead).
    let env = std::env::vars_os().map(|(k, v)| {
        (
            k.to_string_lossy().into_owned(),
            v.to_string_lossy().into_owned(),
        )
    });
    let config = match parse_args(std::env::args().skip(1), env) {
        Ok(Command::Run(c)) => *c,
        Ok(Command::Help) => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("{}", version());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("livevote: {e}\n(try 'livevote --help')");
            return ExitCode::from(2);
        }
    };
    let server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("livevote: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match server.local_addr() {
        Ok(addr) => {
            let base = &server.app().config.base_path;
            eprintln!(
                "livevote listening on http://{addr}/  (vote page: http://{addr}{base}/index)"
            );
            // On every interface, clients use names we cannot guess (a LAN address, a host
            // name): say which ones are answered, or the first visitor meets a bare 421.
            if addr.ip().is_unspecified() {
                let names = host_names(&server.app().config).join(", ");
                eprintln!(
                    "livevote: answers to Host {names}; any other name gets 421 Misdirected \
                     Request. Add the names clients use with --host NAME (e.g. --host \
                     192.168.1.5 or --host vote.lan), or --host '*' behind a proxy that checks Host"
                );
            }
        }
        Err(e) => eprintln!("livevote: {e}"),
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("livevote: {e}");
            ExitCode::from(1)
        }
    }
}
