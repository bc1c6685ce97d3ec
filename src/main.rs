fn main() -> std::process::ExitCode {
    agentkey::cli::run()
}
