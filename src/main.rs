use std::process::ExitCode;

fn main() -> ExitCode {
    match caraml::registry() {
        Ok(registry) => caraml::api::cli::main(registry),
        Err(err) => {
            eprintln!("error: a built-in workflow is invalid: {err}");
            ExitCode::FAILURE
        }
    }
}
