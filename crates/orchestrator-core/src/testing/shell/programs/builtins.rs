//! The fake shell's builtins: output (`echo`, `printf`), `test`, signals
//! (`kill`), `sleep`, the environment (`env`), `ulimit` and `cd`.

use std::time::Duration;

use super::run;
use crate::exec::cpu_seconds;
use crate::testing::fs::{Node, SANDBOX_ROOT};
use crate::testing::machine::SIGKILL;
use crate::testing::shell::{Ctx, Exit, Loc};

pub(super) fn echo(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (newline, words) = match args.first() {
        Some(n) if n == "-n" => (false, &args[1..]),
        _ => (true, args),
    };
    let mut line = words.join(" ");
    if newline {
        line.push('\n');
    }
    i32::from(!ctx.write(1, line.as_bytes()))
}

/// Backslash escapes (`\n`, `\t`, `\\`, `\NNN` octal) and `%s`, `%d`, `%%`.
pub(super) fn printf(ctx: &mut Ctx, args: &[String]) -> i32 {
    let Some((format, mut rest)) = args.split_first() else {
        ctx.warn("printf: missing format");
        return 2;
    };
    let f = format.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < f.len() {
        match (f[i], f.get(i + 1).copied()) {
            (b'\\', Some(b'0'..=b'7')) => {
                let digits = f[i + 1..]
                    .iter()
                    .take(3)
                    .take_while(|c| (b'0'..=b'7').contains(c))
                    .count();
                let v = f[i + 1..i + 1 + digits]
                    .iter()
                    .fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 1 + digits;
            }
            (b'\\', Some(e)) => {
                out.push(match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'a' => 7,
                    other => other,
                });
                i += 2;
            }
            (b'%', Some(b'%')) => {
                out.push(b'%');
                i += 2;
            }
            (b'%', Some(b's' | b'd')) => {
                let (arg, more) = rest.split_first().map_or(("", rest), |(a, m)| (a, m));
                rest = more;
                out.extend_from_slice(arg.as_bytes());
                i += 2;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    i32::from(!ctx.write(1, &out))
}

/// `test` / `[`: `!`, unary file and string tests, string and integer
/// comparisons.
pub(super) fn test(ctx: &mut Ctx, args: &[String]) -> i32 {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match eval_test(ctx, &a) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(msg) => {
            ctx.warn(format!("test: {msg}"));
            2
        }
    }
}

fn eval_test(ctx: &Ctx, a: &[&str]) -> Result<bool, String> {
    let int = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| format!("{s}: bad number"))
    };
    Ok(match a {
        [] => false,
        ["!", rest @ ..] => !eval_test(ctx, rest)?,
        [s] => !s.is_empty(),
        ["-n", s] => !s.is_empty(),
        ["-z", s] => s.is_empty(),
        [op @ ("-e" | "-f" | "-d" | "-s" | "-L" | "-h"), p] => {
            let loc = ctx.locate(p, !matches!(*op, "-L" | "-h"));
            let node = ctx.node(&loc);
            match (*op, node) {
                ("-e", n) => n.is_some(),
                ("-f", n) => matches!(n, Some(Node::File(_))),
                ("-d", _) => ctx.is_dir(&loc),
                ("-s", Some(Node::File(d))) => !d.is_empty(),
                ("-s", n) => matches!(n, Some(Node::Dir)),
                (_, n) => matches!(n, Some(Node::Symlink(_))),
            }
        }
        [l, "=", r] => l == r,
        [l, "!=", r] => l != r,
        [l, op, r] => {
            let (l, r) = (int(l)?, int(r)?);
            match *op {
                "-eq" => l == r,
                "-ne" => l != r,
                "-lt" => l < r,
                "-le" => l <= r,
                "-gt" => l > r,
                "-ge" => l >= r,
                _ => return Err(format!("unknown operator {op}")),
            }
        }
        _ => return Err("too many arguments".to_string()),
    })
}

fn signal_number(name: &str) -> Option<i32> {
    let n = name.trim_start_matches("SIG");
    Some(match n {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "KILL" => SIGKILL,
        "USR1" => 10,
        "USR2" => 12,
        "TERM" => 15,
        _ => return n.parse().ok(),
    })
}

/// `kill [-SIG | -s SIG] PID...` (a negative pid names a group).
pub(super) async fn kill(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (sig, targets) = match args {
        [s, name, rest @ ..] if s == "-s" => (signal_number(name), rest),
        [s, rest @ ..] if s.starts_with('-') && s.len() > 1 && !rest.is_empty() => {
            (signal_number(&s[1..]), rest)
        }
        rest => (Some(15), rest),
    };
    let Some(sig) = sig else {
        ctx.warn("kill: bad signal");
        return 1;
    };
    let mut status = 0;
    for t in targets {
        let ok = match t.parse::<i64>() {
            Ok(n) if n < -1 => !ctx.machine.kill_group((-n) as u32, sig).is_empty(),
            Ok(n) if n > 0 => ctx.machine.signal(n as u32, sig),
            _ => false,
        };
        if !ok {
            ctx.warn(format!("kill: ({t}) - No such process"));
            status = 1;
        }
    }
    // A signal to this very process takes effect before the next command.
    ctx.checkpoint().await;
    status
}

pub(super) async fn sleep(ctx: &mut Ctx, args: &[String]) -> i32 {
    let mut total = Duration::ZERO;
    for a in args {
        let (num, unit) = match a.strip_suffix(['s', 'm', 'h']) {
            Some(n) => (n, &a[n.len()..]),
            None => (a.as_str(), ""),
        };
        let mult = match unit {
            "m" => 60.0,
            "h" => 3600.0,
            _ => 1.0,
        };
        match num.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => total += Duration::from_secs_f64(s * mult),
            _ => {
                ctx.warn(format!("sleep: invalid number '{a}'"));
                return 1;
            }
        }
    }
    ctx.blocked(tokio::time::sleep(total)).await;
    0
}

/// `env` prints the environment; `env NAME=VALUE... CMD...` runs CMD with
/// those added.
pub(super) async fn env(ctx: &mut Ctx, args: &[String]) -> Result<i32, Exit> {
    let n = args.iter().take_while(|a| a.contains('=')).count();
    let saved = (ctx.vars.clone(), ctx.exported.clone());
    for a in &args[..n] {
        if let Some((k, v)) = a.split_once('=') {
            ctx.vars.insert(k.to_string(), v.to_string());
            ctx.exported.insert(k.to_string());
        }
    }
    let r = if n == args.len() {
        let mut out = String::new();
        for k in &ctx.exported {
            if let Some(v) = ctx.vars.get(k) {
                out.push_str(&format!("{k}={v}\n"));
            }
        }
        ctx.write(1, out.as_bytes());
        Ok(0)
    } else {
        run(ctx, &args[n..]).await
    };
    (ctx.vars, ctx.exported) = saved;
    r
}

/// `ulimit [-f | -n | -t | -u | -v]`: the limit in force, in the units
/// `sh` uses (512-byte blocks for -f, KiB for -v).
pub(super) fn ulimit(ctx: &mut Ctx, args: &[String]) -> i32 {
    let l = ctx.machine.lock().limits.clone();
    let value = match args.first().map(String::as_str).unwrap_or("-f") {
        "-n" => Some(l.open_files().unwrap_or(1024)),
        "-f" => l.file_size_bytes().map(|b| b / 512),
        "-t" => l.cpu_time().map(cpu_seconds),
        "-u" => l.pids(),
        "-v" => l.memory_bytes().map(|b| b / 1024),
        other => {
            ctx.warn(format!("ulimit: {other}: unknown option"));
            return 2;
        }
    };
    let text = value.map_or("unlimited".to_string(), |v| v.to_string());
    ctx.write(1, format!("{text}\n").as_bytes());
    0
}

pub(super) fn cd(ctx: &mut Ctx, args: &[String]) -> i32 {
    let target = args.first().map_or(SANDBOX_ROOT, String::as_str);
    let loc = ctx.locate(target, true);
    match loc {
        Loc::Ws(p) if ctx.is_dir(&Loc::Ws(p.clone())) => {
            ctx.cwd = p;
            0
        }
        _ => {
            ctx.warn(format!("cd: can't cd to {target}"));
            2
        }
    }
}

pub(super) fn pwd(ctx: &mut Ctx) -> i32 {
    let cwd = ctx.cwd.display().to_string();
    let line = if cwd.is_empty() {
        format!("{SANDBOX_ROOT}\n")
    } else {
        format!("{SANDBOX_ROOT}/{cwd}\n")
    };
    ctx.write(1, line.as_bytes());
    0
}
