//! Turning clap's own (multi-line) errors into runbox's one-line errors, and
//! the order in which a bad command line's faults are reported.

use std::error::Error as _;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};

use super::Cli;
use crate::error::CliError;

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// A sound command line.
    Cli(Cli),
    /// `--help` or `--version`: print clap's text and exit 0.
    Help(clap::Error),
    /// A bad command line, with the `--backend` of a `run` whose only fault
    /// is a flag value (the `run --json` error object names it).
    Failed {
        /// What is wrong, one line.
        error: CliError,
        /// The run's backend, when the command line got that far.
        backend: Option<String>,
    },
}

/// Parses the command line (`args[0]` is the program name).
///
/// A flag value is checked as clap reads it, but a bad one is reported only
/// when the rest of the line is sound: a syntax fault (unknown flag, missing
/// command) or `--help` anywhere on the line comes first, then an empty
/// command, then the bad value of the flag defined first (as `--help` lists
/// them), as if every value were checked after parsing.
pub fn parse_args(args: &[String]) -> Parsed {
    match Cli::try_parse_from(args) {
        Ok(cli) => Parsed::Cli(cli),
        Err(err) if is_value_error(&err) => value_error(args, err),
        Err(err) => from_clap(err, None),
    }
}

fn from_clap(err: clap::Error, backend: Option<String>) -> Parsed {
    match clap_error(&err) {
        Ok(()) => Parsed::Help(err),
        Err(error) => Parsed::Failed { error, backend },
    }
}

/// Did one of our value parsers ([`crate::parse`]) refuse a value?
fn is_value_error(err: &clap::Error) -> bool {
    err.kind() == ErrorKind::ValueValidation && err.source().is_some()
}

/// The long name (`memory`) of the flag whose value `err` refused.
fn refused_long(err: &clap::Error) -> Option<String> {
    context_str(err, ContextKind::InvalidArg)
        .map(|a| flag_name(&a).trim_start_matches('-').to_string())
}

/// `cmd` with the value of `run --LONG` taken as a plain string.
fn relax(cmd: clap::Command, long: Option<&str>) -> clap::Command {
    cmd.mut_subcommand("run", |run| {
        run.mut_args(|a| {
            if a.get_long().is_some() && a.get_long() == long {
                a.value_parser(clap::value_parser!(String))
            } else {
                a
            }
        })
    })
}

/// Parses again with each refused flag taken as a plain string, until the
/// line parses (then the first fault stands, with the run's backend) or
/// fails on something else (then that is the answer).
fn value_error(args: &[String], err: clap::Error) -> Parsed {
    let mut refused = vec![(refused_long(&err), err)];
    let mut cmd = relax(Cli::command(), refused[0].0.as_deref());
    // Each round relaxes one more flag; there are not more flags than args.
    for _ in 0..args.len() {
        match cmd.clone().try_get_matches_from(args) {
            Ok(m) => return first_fault(&cmd, &m, refused),
            Err(e) if is_value_error(&e) => {
                let long = refused_long(&e);
                cmd = relax(cmd, long.as_deref());
                refused.push((long, e));
            }
            Err(e) => return from_clap(e, None),
        }
    }
    let (_, err) = refused.swap_remove(0);
    from_clap(err, None)
}

/// Of a `run` line that parses once the `refused` values are strings: an
/// empty command, else the refused value of the flag defined first.
fn first_fault(
    cmd: &clap::Command,
    m: &clap::ArgMatches,
    mut refused: Vec<(Option<String>, clap::Error)>,
) -> Parsed {
    let run = m.subcommand_matches("run");
    let backend = run.and_then(|r| r.get_one::<String>("backend").cloned());
    let command: Vec<String> = run
        .and_then(|r| r.get_many::<String>("command"))
        .map(|c| c.cloned().collect())
        .unwrap_or_default();
    if let Err(error) = super::check_command(&command) {
        return Parsed::Failed { error, backend };
    }
    let order: Vec<Option<&str>> = cmd
        .find_subcommand("run")
        .map(|r| r.get_arguments().map(|a| a.get_long()).collect())
        .unwrap_or_default();
    let rank = |long: &Option<String>| {
        order
            .iter()
            .position(|l| *l == long.as_deref())
            .unwrap_or(usize::MAX)
    };
    // A stable sort keeps the first refusal of equally ranked flags.
    refused.sort_by_key(|(long, _)| rank(long));
    let (_, err) = refused.swap_remove(0);
    from_clap(err, backend)
}

fn context_str(err: &clap::Error, kind: ContextKind) -> Option<String> {
    match err.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => Some(v.join(", ")),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        ContextValue::StyledStrs(v) => Some(
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ContextValue::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The flag name out of clap's `--memory <SIZE>` rendering.
fn flag_name(rendered: &str) -> String {
    rendered
        .split([' ', '='])
        .next()
        .unwrap_or(rendered)
        .trim_matches(|c| c == '<' || c == '>')
        .to_string()
}

/// Turns a clap error into one line. Help and version requests are not
/// errors: `Ok(())` means "print clap's text and exit 0".
fn clap_error(err: &clap::Error) -> Result<(), CliError> {
    let arg = context_str(err, ContextKind::InvalidArg);
    let value = context_str(err, ContextKind::InvalidValue);
    let e = match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => return Ok(()),
        ErrorKind::UnknownArgument => {
            let a = arg.unwrap_or_else(|| "?".into());
            let mut e = CliError::flag(flag_name(&a), "unknown flag");
            if let Some(s) = context_str(err, ContextKind::SuggestedArg) {
                e.message.push_str(&format!(" (did you mean {s}?)"));
            }
            e.message
                .push_str("; see `runbox --help` (put the command after `--`)");
            e
        }
        ErrorKind::InvalidSubcommand => {
            let a = context_str(err, ContextKind::InvalidSubcommand)
                .or(arg)
                .unwrap_or_else(|| "?".into());
            CliError::new(
                "invalid_flag",
                format!("unknown subcommand {a:?} (expected run, backends, list, show or gc)"),
            )
        }
        ErrorKind::MissingSubcommand | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            CliError::new(
                "invalid_flag",
                "a subcommand is required: run, backends, list, show or gc (see `runbox --help`)",
            )
        }
        ErrorKind::MissingRequiredArgument => {
            let a = arg.unwrap_or_default();
            if a.contains("COMMAND") {
                CliError::new(
                    "invalid_flag",
                    "no command given: usage `runbox run [OPTIONS] -- COMMAND [ARGS...]`",
                )
            } else {
                CliError::new("invalid_flag", format!("missing required argument {a}"))
            }
        }
        ErrorKind::ValueValidation if err.source().is_some() => {
            let a = arg.unwrap_or_else(|| "?".into());
            let reason = err.source().map(ToString::to_string).unwrap_or_default();
            CliError::flag(flag_name(&a), reason)
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let a = arg.unwrap_or_else(|| "?".into());
            match value {
                Some(v) if v.is_empty() => CliError::flag(flag_name(&a), "a value is required"),
                Some(v) => CliError::flag(flag_name(&a), format!("invalid value {v:?}")),
                None => CliError::flag(flag_name(&a), "a value is required"),
            }
        }
        ErrorKind::ArgumentConflict | ErrorKind::TooManyValues | ErrorKind::WrongNumberOfValues => {
            let a = arg.unwrap_or_else(|| "?".into());
            CliError::flag(flag_name(&a), first_line(err))
        }
        ErrorKind::NoEquals | ErrorKind::TooFewValues => {
            let a = arg.unwrap_or_else(|| "?".into());
            CliError::flag(flag_name(&a), "a value is required")
        }
        _ => CliError::new("invalid_flag", first_line(err)),
    };
    Err(e)
}

fn first_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid command line");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn err(a: &[&str]) -> (CliError, Option<String>) {
        match parse_args(&args(a)) {
            Parsed::Failed { error, backend } => (error, backend),
            other => panic!("{a:?} should fail: {other:?}"),
        }
    }

    #[test]
    fn clap_errors_become_one_line() {
        let (e, _) = err(&["runbox", "run", "--bogus", "--", "true"]);
        assert_eq!(e.flag.as_deref(), Some("--bogus"), "{e}");
        let (e, _) = err(&["runbox", "run", "--memory"]);
        assert_eq!(e.flag.as_deref(), Some("--memory"), "{e}");
        let (e, _) = err(&["runbox", "run"]);
        assert!(e.message.contains("no command"), "{e}");
        let (e, _) = err(&["runbox"]);
        assert!(e.message.contains("subcommand"), "{e}");
        let (e, _) = err(&["runbox", "frob"]);
        assert!(e.message.contains("frob"), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn a_bad_value_names_its_flag_and_the_backend() {
        let (e, b) = err(&["runbox", "run", "--memory", "12Q", "--", "true"]);
        assert_eq!(e.flag.as_deref(), Some("--memory"), "{e}");
        assert_eq!(e.kind, "invalid_flag");
        assert_eq!(e.code, crate::error::EXIT_RUNBOX);
        assert!(e.message.starts_with("invalid size \"12Q\""), "{e}");
        assert_eq!(b.as_deref(), Some("native"));
        let (e, b) = err(&["runbox", "run", "--pids", "0", "--backend=x", "--", "true"]);
        assert_eq!(e.flag.as_deref(), Some("--pids"), "{e}");
        assert_eq!(b.as_deref(), Some("x"));
        let (e, b) = err(&[
            "runbox",
            "run",
            "--mount",
            "nocolon",
            "--network",
            "bridge",
            "--backend=y",
            "--",
            "true",
        ]);
        assert_eq!(e.flag.as_deref(), Some("--network"), "{e}");
        assert!(e.message.contains("unknown network mode"), "{e}");
        assert_eq!(b.as_deref(), Some("y"));
    }

    #[test]
    fn syntax_faults_and_help_come_before_a_bad_value() {
        let (e, b) = err(&["runbox", "run", "--memory", "12Q", "--bogus", "--", "true"]);
        assert_eq!(e.flag.as_deref(), Some("--bogus"), "{e}");
        assert_eq!(b, None);
        let (e, _) = err(&["runbox", "run", "--memory", "12Q", "--cpus", "x"]);
        assert!(e.message.contains("no command"), "{e}");
        let (e, _) = err(&["runbox", "run", "--memory", "12Q", "--", ""]);
        assert!(e.message.contains("no command"), "{e}");
        let (e, _) = err(&[
            "runbox",
            "run",
            "--timeout",
            "-1s",
            "--memory",
            "0",
            "--",
            "x",
        ]);
        assert_eq!(e.flag.as_deref(), Some("--memory"), "{e}");
        let help = parse_args(&args(&["runbox", "run", "--memory", "12Q", "--help"]));
        assert!(matches!(help, Parsed::Help(_)), "{help:?}");
    }
}
