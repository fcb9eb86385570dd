//! A bot's command line: parsing with errors that name what the user set, shell completions and a
//! man page generated from the same clap definitions, so they never drift from `--help`.

use crate::output::{say, write_stdout};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use std::error::Error as _;
use std::ffi::OsString;
use std::process::exit;

/// Parses a bot's command line (its `Cli`, which flattens [`crate::Settings`]).
///
/// Beyond `T::parse()`: `--completions SHELL` prints a completion script and `--man-page` a man
/// page, then the process exits 0; an invalid value that came from an environment variable is
/// reported under that variable's name (the user set `JOB_CONCURRENCY`, not `--job-concurrency`).
pub fn parse<T: Parser>() -> T {
    let args: Vec<OsString> = std::env::args_os().collect();
    if let Some(generated) = generated_text::<T>(&args) {
        let code = match write_stdout(&generated) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        exit(code);
    }
    match T::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) => {
            if let Some(line) = environment_problem::<T>(&error, &args) {
                say(line);
                exit(2);
            }
            error.exit()
        }
    }
}

/// The completion script or man page asked for on the command line, if any.
fn generated_text<T: CommandFactory>(args: &[OsString]) -> Option<Vec<u8>> {
    let mut command = T::command();
    let name = command.get_name().to_string();
    let mut out = Vec::new();
    let mut words = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(word) = words.next() {
        if word == "--man-page" {
            clap_mangen::Man::new(command).render(&mut out).ok()?;
            return Some(out);
        }
        let shell = match word.strip_prefix("--completions") {
            Some("") => words.next().map(|w| w.to_string()),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        };
        if let Some(shell) = shell {
            let shell: clap_complete::Shell = shell.parse().ok()?;
            clap_complete::generate(shell, &mut command, name, &mut out);
            return Some(out);
        }
    }
    None
}

/// When a value is invalid and it came from the environment (the flag is not on the command
/// line), the line to print instead of clap's, naming the variable.
fn environment_problem<T: CommandFactory>(
    error: &clap::Error,
    args: &[OsString],
) -> Option<String> {
    if !matches!(
        error.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(invalid_arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = invalid_arg
        .split_whitespace()
        .next()?
        .trim_start_matches('-');
    let command = T::command();
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?;
    let flag = format!("--{long}");
    let on_command_line = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    });
    let variable = arg.get_env()?.to_string_lossy().into_owned();
    let value = std::env::var(&variable).ok()?;
    if on_command_line {
        return None;
    }
    let reason = error
        .source()
        .map(|s| s.to_string())
        .or_else(|| match error.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(valid)) => {
                Some(format!("expected one of {}", valid.join(", ")))
            }
            _ => None,
        })
        .unwrap_or_else(|| "not a valid value".into());
    Some(format!(
        "error: the environment variable {variable}={value:?} is not valid: {reason}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser)]
    #[command(name = "testbot")]
    struct Cli {
        #[command(flatten)]
        settings: crate::Settings,
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn completions_and_man_page_come_from_the_clap_definitions() {
        let bash = generated_text::<Cli>(&os(&["testbot", "--completions", "bash"])).unwrap();
        let bash = String::from_utf8(bash).unwrap();
        assert!(bash.contains("--backend-url"), "{bash}");
        let zsh = generated_text::<Cli>(&os(&["testbot", "--completions=zsh"])).unwrap();
        assert!(String::from_utf8(zsh).unwrap().contains("#compdef testbot"));
        let man = generated_text::<Cli>(&os(&["testbot", "--man-page"])).unwrap();
        let man = String::from_utf8(man).unwrap();
        assert!(
            man.starts_with(".ie") || man.contains(".TH testbot"),
            "{man}"
        );
        assert!(man.contains("BACKEND_URL"), "{man}");
        assert!(generated_text::<Cli>(&os(&["testbot", "--standalone"])).is_none());
    }
}
