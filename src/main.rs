//! `livevote`: arguments → `Config` → `server::run`; errors → exit codes (2: usage, 1: start-up).

use std::process::ExitCode;

use livevote::config::{parse_args, Command, USAGE};
use livevote::server::Server;

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(c)) => *c,
        Ok(Command::Help) => {
            print!("{USAGE}");
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
            eprintln!("livevote listening on http://{addr}/  (vote page: http://{addr}/index)")
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
