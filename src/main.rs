//! The `subnetsim` binary: parse arguments, run a command, map errors to
//! exit codes (2 for bad input, 1 for anything else). All logic is in the
//! library and in `cli`.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
