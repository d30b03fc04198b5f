//! The programs the fake shell knows (its "PATH"): the shell itself, its
//! builtins and the small utilities test scripts use, each with the options
//! and output format of busybox/coreutils that scripts rely on.

mod builtins;
mod files;

use super::parse::parse;
use super::{BoxFut, Ctx, Exit, Input};
use builtins::*;
use files::*;

const PROGRAMS: [&str; 28] = [
    ":", "[", "cat", "cd", "dd", "echo", "env", "exec", "exit", "false", "grep", "kill", "ln",
    "ls", "mkdir", "printf", "pwd", "rm", "sh", "sleep", "tail", "test", "touch", "true", "ulimit",
    "wait", "wc", "yes",
];

/// How a write of endless output is chunked (each chunk is a chance to stop).
pub(crate) const CHUNK: usize = 16 * 1024;

/// The program's name without a standard bin directory in front.
fn base(name: &str) -> &str {
    [
        "/usr/local/bin/",
        "/usr/bin/",
        "/bin/",
        "/usr/sbin/",
        "/sbin/",
    ]
    .iter()
    .find_map(|d| name.strip_prefix(d))
    .unwrap_or(name)
}

/// Is there such a program?
pub(crate) fn exists(name: &str) -> bool {
    PROGRAMS.contains(&base(name))
}

/// Runs `argv` in `ctx`'s process; a missing program is status 127.
pub(crate) fn run<'a>(ctx: &'a mut Ctx, argv: &'a [String]) -> BoxFut<'a, Result<i32, Exit>> {
    Box::pin(async move {
        let name = base(&argv[0]);
        let args = &argv[1..];
        Ok(match name {
            ":" | "true" => 0,
            "false" => 1,
            "exit" => {
                let code = args.first().map_or(Some(ctx.status), |a| a.parse().ok());
                return Err(Exit(code.unwrap_or(2)));
            }
            "exec" if args.is_empty() => 0,
            "exec" => return Err(Exit(run(ctx, args).await?)),
            "sh" => sh(ctx, args).await,
            "echo" => echo(ctx, args),
            "printf" => printf(ctx, args),
            "cat" => cat(ctx, args).await,
            "wc" => wc(ctx, args),
            "ls" => ls(ctx, args),
            "mkdir" => mkdir(ctx, args),
            "ln" => ln(ctx, args),
            "rm" => rm(ctx, args),
            "touch" => touch(ctx, args),
            "test" => test(ctx, args),
            "[" => match args.split_last() {
                Some((last, rest)) if last == "]" => test(ctx, rest),
                _ => {
                    ctx.warn("[: missing ]");
                    2
                }
            },
            "grep" => grep(ctx, args),
            "kill" => kill(ctx, args).await,
            "sleep" => sleep(ctx, args).await,
            "wait" => ctx.wait_children().await,
            "env" => env(ctx, args).await?,
            "ulimit" => ulimit(ctx, args),
            "yes" => yes(ctx, args).await,
            "tail" => tail(ctx, args).await,
            "dd" => dd(ctx, args).await,
            "cd" => cd(ctx, args),
            "pwd" => pwd(ctx),
            _ => {
                ctx.warn(format!("sh: {}: not found", argv[0]));
                127
            }
        })
    })
}

/// `sh -c SCRIPT [NAME ARGS...]`, `sh FILE [ARGS...]`, or a script on stdin.
async fn sh(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (script, params) = match args {
        [c, script, rest @ ..] if c == "-c" => (script.clone(), rest.to_vec()),
        [file, rest @ ..] => match ctx.open_read(file) {
            Ok(Input::Data(d)) => {
                let mut params = vec![file.clone()];
                params.extend_from_slice(rest);
                (String::from_utf8_lossy(&d).into_owned(), params)
            }
            _ => {
                ctx.warn(format!("sh: can't open {file}"));
                return 127;
            }
        },
        [] => match &ctx.stdin {
            Input::Data(d) => (String::from_utf8_lossy(d).into_owned(), Vec::new()),
            Input::Zero => return 0,
        },
    };
    let list = match parse(&script) {
        Ok(l) => l,
        Err(msg) => {
            ctx.warn(format!("sh: {msg}"));
            return 2;
        }
    };
    let saved = std::mem::take(&mut ctx.args);
    ctx.args = if params.is_empty() {
        vec!["sh".to_string()]
    } else {
        params
    };
    let code = ctx.run_script(&list).await;
    ctx.args = saved;
    code
}
