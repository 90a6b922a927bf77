//! `livevote`: arguments and `LIVEVOTE_*` environment → `Config` → `server::run_until` a
//! signal; errors → exit codes (0: stopped normally, 1: start-up or run failure, or a shutdown
//! past `--shutdown-timeout`, 2: usage, 128 + the signal's number: a second SIGTERM/SIGINT,
//! which exits at once). `livevote probe [URL]`: 0 when the URL answers `200`, else 1.

use std::process::ExitCode;

use livevote::app::routes::host_names;
use livevote::config::{help, parse_args, version, Command};
use livevote::log;
use livevote::server::{Drained, Server};
use livevote::signals::{self, Signals, SIGINT, SIGTERM};

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
        Ok(Command::Probe(url)) => {
            return match livevote::probe::probe(&url) {
                Ok(200) => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("livevote probe: {url} answered {status}");
                    ExitCode::from(1)
                }
                Err(e) => {
                    eprintln!("livevote probe: {e}");
                    ExitCode::from(1)
                }
            };
        }
        Err(e) => {
            // Before the format is known: always the plain form.
            eprintln!("livevote: [error] {e}\n(try 'livevote --help')");
            return ExitCode::from(2);
        }
    };
    // Before anything starts: a signal from now on is a graceful shutdown.
    let mut signals = match Signals::install(&[SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            log::error(&format!("cannot start: {e}"));
            return ExitCode::from(1);
        }
    };
    let timeout = config.limits.shutdown_timeout;
    let server = match Server::bind(config) {
        Ok(s) => s,
        Err(e) => {
            log::error(&format!("cannot start: {e}"));
            return ExitCode::from(1);
        }
    };
    match server.local_addr() {
        Ok(addr) => {
            let base = &server.app().config.base_path;
            log::info(&format!(
                "listening on http://{addr}/  (vote page: http://{addr}{base}/index)"
            ));
            // On every interface, clients use names we cannot guess (a LAN address, a host
            // name): say which ones are answered, or the first visitor meets a bare 421.
            if addr.ip().is_unspecified() {
                let names = host_names(&server.app().config).join(", ");
                log::warn(&format!(
                    "answers to Host {names}; any other name gets 421 Misdirected \
                     Request. Add the names clients use with --host NAME (e.g. --host \
                     192.168.1.5 or --host vote.lan), or --host '*' behind a proxy that checks Host"
                ));
            }
        }
        Err(e) => log::error(&e.to_string()),
    }
    let until = move || match signals.wait() {
        Ok(sig) => log::info(&format!(
            "{} received (another one exits at once)",
            signals::name(sig)
        )),
        Err(e) => log::error(&format!("waiting for signals: {e}; shutting down")),
    };
    match server.run_until(until) {
        Ok(Drained::Clean) => {
            log::info("stopped");
            ExitCode::SUCCESS
        }
        Ok(Drained::TimedOut {
            requests,
            websockets,
        }) => {
            log::error(&format!(
                "shutdown not finished within --shutdown-timeout ({:.1} s): \
                 {requests} request(s) and {websockets} WebSocket(s) still open; exiting anyway",
                timeout.as_secs_f64()
            ));
            ExitCode::from(1)
        }
        Err(e) => {
            log::error(&e.to_string());
            ExitCode::from(1)
        }
    }
}
