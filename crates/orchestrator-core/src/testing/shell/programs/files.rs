//! The fake shell's utilities that read and write files and streams:
//! `cat`, `wc`, `ls`, `mkdir`, `ln`, `rm`, `touch`, `grep`, `yes`, `tail`
//! and `dd`.

use std::path::Path;
use std::sync::Arc;

use super::CHUNK;
use crate::testing::fs::{Fs, Node};
use crate::testing::machine::SIGKILL;
use crate::testing::shell::{Ctx, Input, Loc, Output};

/// Inputs named by `files` (stdin when there are none, or for `-`).
fn inputs(ctx: &mut Ctx, prog: &str, files: &[String]) -> (Vec<(String, Input)>, i32) {
    if files.is_empty() {
        return (vec![(String::new(), ctx.stdin.clone())], 0);
    }
    let mut out = Vec::new();
    let mut status = 0;
    for f in files {
        if f == "-" {
            out.push((String::new(), ctx.stdin.clone()));
            continue;
        }
        match ctx.open_read(f) {
            Ok(i) => out.push((f.clone(), i)),
            Err(e) => {
                ctx.warn(format!("{prog}: {f}: {e}"));
                status = 1;
            }
        }
    }
    (out, status)
}

pub(super) async fn cat(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (ins, mut status) = inputs(ctx, "cat", args);
    for (_, input) in ins {
        match input {
            Input::Data(d) => {
                if !ctx.write(1, &d) {
                    return 1;
                }
            }
            Input::Zero => {
                let zeros = vec![0u8; CHUNK];
                while ctx.write(1, &zeros) {
                    ctx.checkpoint().await;
                }
                status = 1;
            }
        }
    }
    status
}

pub(super) fn wc(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (flags, files): (Vec<&String>, Vec<&String>) =
        args.iter().partition(|a| a.starts_with('-') && a.len() > 1);
    let files: Vec<String> = files.into_iter().cloned().collect();
    let want = |c: char| flags.is_empty() || flags.iter().any(|f| f.contains(c));
    let (ins, status) = inputs(ctx, "wc", &files);
    for (name, input) in ins {
        let Input::Data(d) = input else {
            ctx.warn("wc: endless input");
            return 1;
        };
        let mut counts = Vec::new();
        if want('l') {
            counts.push(d.iter().filter(|b| **b == b'\n').count());
        }
        if want('w') {
            counts.push(String::from_utf8_lossy(&d).split_whitespace().count());
        }
        if want('c') {
            counts.push(d.len());
        }
        let mut line: Vec<String> = counts.iter().map(ToString::to_string).collect();
        if !name.is_empty() {
            line.push(name);
        }
        ctx.write(1, format!("{}\n", line.join(" ")).as_bytes());
    }
    status
}

pub(super) fn ls(ctx: &mut Ctx, args: &[String]) -> i32 {
    let all = args
        .iter()
        .any(|a| a.starts_with('-') && a.contains(['A', 'a']));
    let mut paths: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    if paths.is_empty() {
        paths.push(".");
    }
    let mut status = 0;
    for p in paths {
        let loc = ctx.locate(p, true);
        let listing = match &loc {
            Loc::Ws(path) => {
                let st = ctx.machine.lock();
                match st.fs.get(path) {
                    Some(Node::Dir) => st.fs.list(path).ok(),
                    Some(_) => Some(vec![p.to_string()]),
                    None => None,
                }
            }
            Loc::Proc(None) => Some(ctx.machine.pids().iter().map(u32::to_string).collect()),
            Loc::Proc(Some(_)) if ctx.is_dir(&loc) => Some(vec!["stat".to_string()]),
            Loc::Null | Loc::Zero | Loc::ProcStat(_) => Some(vec![p.to_string()]),
            _ => None,
        };
        match listing {
            Some(names) => {
                for n in names.iter().filter(|n| all || !n.starts_with('.')) {
                    ctx.write(1, format!("{n}\n").as_bytes());
                }
            }
            None => {
                ctx.warn(format!("ls: {p}: No such file or directory"));
                status = 2;
            }
        }
    }
    status
}

/// Runs `op` on the workspace path each operand names (the link itself for
/// a symlink in the last component); reports failures as `prog: what: why`.
fn each_path(
    ctx: &mut Ctx,
    prog: &str,
    operands: &[&String],
    mut op: impl FnMut(&mut Fs, &Path) -> Result<(), &'static str>,
) -> i32 {
    let mut status = 0;
    for a in operands {
        let r = match ctx.locate(a, false) {
            Loc::Ws(p) => op(&mut ctx.machine.lock().fs, &p),
            _ => Err("Permission denied"),
        };
        if let Err(why) = r {
            ctx.warn(format!("{prog}: {a}: {why}"));
            status = 1;
        }
    }
    status
}

fn split_flags(args: &[String]) -> (String, Vec<&String>) {
    let mut flags = String::new();
    let mut operands = Vec::new();
    for a in args {
        match a.strip_prefix('-') {
            Some(f) if !f.is_empty() && operands.is_empty() => flags.push_str(f),
            _ => operands.push(a),
        }
    }
    (flags, operands)
}

pub(super) fn mkdir(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (flags, dirs) = split_flags(args);
    let parents = flags.contains('p');
    each_path(ctx, "mkdir", &dirs, |fs, p| {
        fs.mkdir(p, parents).map_err(|e| e.message())
    })
}

pub(super) fn ln(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (flags, ops) = split_flags(args);
    let [target, link] = ops.as_slice() else {
        ctx.warn("ln: usage: ln -s TARGET LINK");
        return 1;
    };
    if !flags.contains('s') {
        ctx.warn("ln: only symbolic links are supported");
        return 1;
    }
    let target = Path::new(target.as_str()).to_path_buf();
    each_path(ctx, "ln", &[*link], |fs, p| {
        fs.symlink(&target, p).map_err(|e| e.message())
    })
}

pub(super) fn rm(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (flags, ops) = split_flags(args);
    let (recursive, force) = (flags.contains(['r', 'R']), flags.contains('f'));
    each_path(ctx, "rm", &ops, |fs, p| match fs.get(p) {
        None if force => Ok(()),
        None => Err("No such file or directory"),
        Some(Node::Dir) if !recursive => Err("Is a directory"),
        Some(_) => {
            fs.remove_tree(p);
            Ok(())
        }
    })
}

pub(super) fn touch(ctx: &mut Ctx, args: &[String]) -> i32 {
    let ops: Vec<&String> = args.iter().collect();
    each_path(ctx, "touch", &ops, |fs, p| {
        fs.open_append(p).map_err(|e| e.message())
    })
}

/// Fixed-string matching per line (`^` and `$` anchor it); `-q`, `-v`, `-c`.
pub(super) fn grep(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (flags, ops) = split_flags(args);
    let Some((pattern, files)) = ops.split_first() else {
        ctx.warn("grep: missing pattern");
        return 2;
    };
    let files: Vec<String> = files.iter().map(|f| (*f).clone()).collect();
    let (start, end) = (pattern.starts_with('^'), pattern.ends_with('$'));
    let needle = pattern.trim_start_matches('^').trim_end_matches('$');
    let (ins, status) = inputs(ctx, "grep", &files);
    let mut matched = 0usize;
    let mut out = Vec::new();
    for (_, input) in ins {
        let Input::Data(d) = input else { continue };
        for line in String::from_utf8_lossy(&d).lines() {
            let hit = match (start, end) {
                (true, true) => line == needle,
                (true, false) => line.starts_with(needle),
                (false, true) => line.ends_with(needle),
                (false, false) => line.contains(needle),
            };
            if hit != flags.contains('v') {
                matched += 1;
                out.push(line.to_string());
            }
        }
    }
    if flags.contains('c') {
        ctx.write(1, format!("{matched}\n").as_bytes());
    } else if !flags.contains('q') {
        for l in out {
            ctx.write(1, format!("{l}\n").as_bytes());
        }
    }
    match (status, matched) {
        (0, 0) => 1,
        (0, _) => 0,
        _ => 2,
    }
}

pub(super) async fn yes(ctx: &mut Ctx, args: &[String]) -> i32 {
    let line = if args.is_empty() {
        "y\n".to_string()
    } else {
        format!("{}\n", args.join(" "))
    };
    let chunk = line.repeat((CHUNK / line.len()).max(1));
    while ctx.write(1, chunk.as_bytes()) {
        ctx.checkpoint().await;
    }
    1
}

/// `tail [-n N] [FILE]`; on endless input without a newline (`/dev/zero`)
/// it buffers the line forever, so it grows until the memory limit ends it.
pub(super) async fn tail(ctx: &mut Ctx, args: &[String]) -> i32 {
    let (n, files) = match args {
        [f, n, rest @ ..] if f == "-n" => (n.parse().unwrap_or(10), rest),
        rest => (10usize, rest),
    };
    let (ins, status) = inputs(ctx, "tail", files);
    for (_, input) in ins {
        match input {
            Input::Data(d) => {
                let text = String::from_utf8_lossy(&d);
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(n);
                for l in &lines[from..] {
                    ctx.write(1, format!("{l}\n").as_bytes());
                }
            }
            Input::Zero => loop {
                if !ctx.machine.charge_memory(ctx.pid, 1 << 20) {
                    ctx.machine.signal(ctx.pid, SIGKILL);
                }
                ctx.checkpoint().await;
            },
        }
    }
    status
}

/// `dd if=FILE of=FILE bs=N count=N` (stdin and stdout by default).
pub(super) async fn dd(ctx: &mut Ctx, args: &[String]) -> i32 {
    let opt = |k: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(k)?.strip_prefix('='))
            .map(str::to_string)
    };
    let bs: usize = opt("bs").and_then(|s| s.parse().ok()).unwrap_or(512);
    let count: Option<usize> = opt("count").and_then(|s| s.parse().ok());
    let input = match opt("if") {
        Some(f) => match ctx.open_read(&f) {
            Ok(i) => i,
            Err(e) => {
                ctx.warn(format!("dd: can't open '{f}': {e}"));
                return 1;
            }
        },
        None => ctx.stdin.clone(),
    };
    let out = match opt("of") {
        Some(f) => match ctx.open_write(&f, false) {
            Ok(o) => o,
            Err(e) => {
                ctx.warn(format!("dd: can't open '{f}': {e}"));
                return 1;
            }
        },
        None => ctx.stdout.clone(),
    };
    let data = match &input {
        Input::Data(d) => d.clone(),
        Input::Zero => Arc::new(Vec::new()),
    };
    let (mut blocks, mut bytes) = (0usize, 0usize);
    while count.is_none_or(|c| blocks < c) {
        let block: Vec<u8> = match &input {
            Input::Zero => vec![0; bs],
            Input::Data(_) => {
                let from = blocks * bs;
                if from >= data.len() {
                    break;
                }
                data[from..(from + bs).min(data.len())].to_vec()
            }
        };
        if !ctx.write_to(&out, &block) {
            return 1;
        }
        blocks += 1;
        bytes += block.len();
        ctx.checkpoint().await;
    }
    if let Output::File(_) = out {
        ctx.open_files -= 1;
    }
    ctx.warn(format!(
        "{blocks}+0 records in\n{blocks}+0 records out\n{bytes} bytes copied"
    ));
    0
}
