use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("toolchain") => match xtask::toolchain::ensure(false) {
            Ok(tc) => {
                println!("sysroot: {}", tc.sysroot.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        _ => {
            eprintln!("usage: cargo xtask toolchain");
            ExitCode::from(2)
        }
    }
}
