//! Writes (or checks) the generated files in `schemas/`.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
orderbus-schemas: generate schemas/ from the message types in shared/contracts

USAGE:
    orderbus-schemas [--check] [DIR]

ARGS:
    DIR        output directory (default: schemas)

OPTIONS:
    --check    write nothing; exit 1 if any file in DIR differs from what the types generate
    -h, --help print this help
";

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from("schemas");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--check" => check = true,
            other if other.starts_with('-') => {
                eprintln!("unknown option {other}\n\n{USAGE}");
                return ExitCode::from(2);
            }
            other => dir = PathBuf::from(other),
        }
    }
    let files = match orderbus_contracts::schema::generate() {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: could not generate schemas: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = 0;
    for (name, text) in &files {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(text.as_str()) {
            continue;
        }
        if check {
            eprintln!("stale: {} (run `make schemas`)", path.display());
            stale += 1;
        } else if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text))
        {
            eprintln!("error: could not write {}: {e}", path.display());
            return ExitCode::FAILURE;
        } else {
            println!("wrote {}", path.display());
        }
    }
    if stale > 0 {
        return ExitCode::FAILURE;
    }
    println!("{} files in {} are up to date", files.len(), dir.display());
    ExitCode::SUCCESS
}
