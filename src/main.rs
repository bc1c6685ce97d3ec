//! The `agentkey` binary: everything is in the library; see `cli::run`.

fn main() -> std::process::ExitCode {
    agentkey::cli::run()
}
