//! How the fake shell evaluates a parsed script: lists, `&&`/`||`,
//! pipelines, subshells and background jobs, `if`/`while`, redirections,
//! and the expansion of words (parameters, `$(...)`, `$((...))`, field
//! splitting).

use std::sync::{Arc, Mutex};

use super::parse::{AndOr, Command, List, Part, Pipeline, Redir, RedirOp, Word};
use super::{programs, BoxFut, Ctx, Exit, Input, Output};
use crate::testing::machine::run_as;

/// A process's descriptors, saved around a command's redirections.
type SavedIo = (Input, Output, Output, u64);

impl Ctx {
    /// Runs a list; its status is the last command's.
    pub(crate) fn run_list<'a>(&'a mut self, list: &'a List) -> BoxFut<'a, Result<i32, Exit>> {
        Box::pin(async move {
            let mut status = 0;
            for (ao, background) in &list.0 {
                status = if *background {
                    self.spawn_job(ao.clone())
                } else {
                    self.run_and_or(ao).await?
                };
                self.status = status;
            }
            Ok(status)
        })
    }

    /// Runs a whole script in this process; `exit` ends it.
    pub(crate) async fn run_script(&mut self, list: &List) -> i32 {
        match self.run_list(list).await {
            Ok(code) | Err(Exit(code)) => code,
        }
    }

    async fn run_and_or(&mut self, ao: &AndOr) -> Result<i32, Exit> {
        let mut status = self.run_pipeline(&ao.first).await?;
        for (and, p) in &ao.rest {
            if (status == 0) == *and {
                status = self.run_pipeline(p).await?;
            }
        }
        Ok(status)
    }

    /// `cmd &`: a child process in this group; `$!` is its pid.
    fn spawn_job(&mut self, ao: AndOr) -> i32 {
        let (mut child, pid) = match self.fork("sh") {
            Ok(c) => c,
            Err(msg) => {
                self.warn(format!("sh: {msg}"));
                return 2;
            }
        };
        child.stdin = Input::Data(Arc::default());
        self.last_bg = Some(pid.pid);
        let machine = self.machine.clone();
        let handle = tokio::spawn(async move {
            let body = async move {
                // `( list ) &` is one process, not a child of a child.
                let r = match single_subshell(&ao) {
                    Some(body) => child.run_list(body).await,
                    None => child.run_and_or(&ao).await,
                };
                match r {
                    Ok(c) | Err(Exit(c)) => c,
                }
            };
            run_as(&machine, &pid, body).await
        });
        self.adopt(handle);
        0
    }

    async fn run_pipeline(&mut self, p: &Pipeline) -> Result<i32, Exit> {
        let status = match p.commands.as_slice() {
            [one] => self.run_command(one).await?,
            stages => {
                let (stdin, stdout) = (self.stdin.clone(), self.stdout.clone());
                let mut status = 0;
                for (i, c) in stages.iter().enumerate() {
                    let pipe = Arc::new(Mutex::new(Vec::new()));
                    let last = i + 1 == stages.len();
                    self.stdout = if last {
                        stdout.clone()
                    } else {
                        Output::Buffer(pipe.clone())
                    };
                    // Each stage is a subshell: `exit` ends only the stage.
                    status = match self.run_command(c).await {
                        Ok(s) | Err(Exit(s)) => s,
                    };
                    let data = std::mem::take(&mut *pipe.lock().unwrap_or_else(|p| p.into_inner()));
                    self.stdin = Input::Data(Arc::new(data));
                }
                self.stdin = stdin;
                self.stdout = stdout;
                status
            }
        };
        Ok(if p.negate {
            i32::from(status == 0)
        } else {
            status
        })
    }

    fn run_command<'a>(&'a mut self, c: &'a Command) -> BoxFut<'a, Result<i32, Exit>> {
        Box::pin(async move {
            match c {
                Command::Simple {
                    assigns,
                    words,
                    redirs,
                } => self.run_simple(assigns, words, redirs).await,
                Command::Subshell { body, redirs } => {
                    let (mut child, pid) = match self.fork("sh") {
                        Ok(c) => c,
                        Err(msg) => {
                            self.warn(format!("sh: {msg}"));
                            return Ok(2);
                        }
                    };
                    if let Err(msg) = child.redirect(redirs).await {
                        self.warn(format!("sh: {msg}"));
                        return Ok(2);
                    }
                    let machine = self.machine.clone();
                    let ended = self
                        .blocked(run_as(&machine, &pid, child.run_script_owned(body)))
                        .await;
                    Ok(ended.shell_status())
                }
                Command::If {
                    branches,
                    otherwise,
                } => {
                    for (cond, body) in branches {
                        if self.run_list(cond).await? == 0 {
                            return self.run_list(body).await;
                        }
                    }
                    match otherwise {
                        Some(body) => self.run_list(body).await,
                        None => Ok(0),
                    }
                }
                Command::While { cond, body } => {
                    let mut status = 0;
                    while self.run_list(cond).await? == 0 {
                        status = self.run_list(body).await?;
                        self.checkpoint().await;
                    }
                    Ok(status)
                }
            }
        })
    }

    async fn run_script_owned(mut self, body: &List) -> i32 {
        self.run_script(body).await
    }

    async fn run_simple(
        &mut self,
        assigns: &[(String, Word)],
        words: &[Word],
        redirs: &[Redir],
    ) -> Result<i32, Exit> {
        self.checkpoint().await;
        let mut values = Vec::with_capacity(assigns.len());
        for (name, w) in assigns {
            values.push((name.clone(), self.expand_joined(w).await?));
        }
        let mut argv = Vec::new();
        for w in words {
            argv.extend(self.expand(w).await?);
        }
        let saved = self.save_io();
        if let Err(msg) = self.redirect(redirs).await {
            self.restore_io(saved);
            self.warn(format!("sh: {msg}"));
            return Ok(2);
        }
        if argv.is_empty() {
            self.restore_io(saved);
            for (name, value) in values {
                self.vars.insert(name, value);
            }
            return Ok(0);
        }
        // `NAME=value cmd`: the variables hold for this command only.
        let vars = (!values.is_empty()).then(|| (self.vars.clone(), self.exported.clone()));
        for (name, value) in values {
            self.exported.insert(name.clone());
            self.vars.insert(name, value);
        }
        let r = programs::run(self, &argv).await;
        if let Some((v, e)) = vars {
            self.vars = v;
            self.exported = e;
        }
        self.restore_io(saved);
        r
    }

    fn save_io(&self) -> SavedIo {
        (
            self.stdin.clone(),
            self.stdout.clone(),
            self.stderr.clone(),
            self.open_files,
        )
    }

    fn restore_io(&mut self, (stdin, stdout, stderr, open): SavedIo) {
        self.stdin = stdin;
        self.stdout = stdout;
        self.stderr = stderr;
        self.open_files = open;
    }

    async fn redirect(&mut self, redirs: &[Redir]) -> Result<(), String> {
        for r in redirs {
            let target = self.expand_joined(&r.target).await.map_err(|_| "exit")?;
            match r.op {
                RedirOp::In => {
                    let input = self
                        .open_read(&target)
                        .map_err(|e| format!("can't open {target}: {e}"))?;
                    if r.fd == 0 {
                        self.stdin = input;
                    }
                }
                RedirOp::Out | RedirOp::Append => {
                    let out = self
                        .open_write(&target, r.op == RedirOp::Append)
                        .map_err(|e| format!("can't create {target}: {e}"))?;
                    self.set_fd(r.fd, out);
                }
                RedirOp::Dup => {
                    let out = match target.as_str() {
                        "1" => self.stdout.clone(),
                        "2" => self.stderr.clone(),
                        "-" => Output::Null,
                        _ => return Err(format!("{target}: bad file descriptor")),
                    };
                    self.set_fd(r.fd, out);
                }
            }
        }
        Ok(())
    }

    fn set_fd(&mut self, fd: u8, out: Output) {
        match fd {
            1 => self.stdout = out,
            2 => self.stderr = out,
            _ => {}
        }
    }

    // ----- expansion --------------------------------------------------------

    /// A word's fields: unquoted expansions are split on white space, and a
    /// word that expands to nothing unquoted gives no field.
    pub(crate) async fn expand(&mut self, w: &Word) -> Result<Vec<String>, Exit> {
        let mut fields: Vec<String> = Vec::new();
        let mut cur: Option<String> = None;
        for seg in &w.0 {
            let text = self.expand_part(&seg.part).await?;
            if seg.quoted || matches!(seg.part, Part::Lit(_)) {
                cur.get_or_insert_with(String::new).push_str(&text);
                continue;
            }
            let mut pieces = text.split_ascii_whitespace();
            if text.starts_with(|c: char| c.is_ascii_whitespace()) {
                fields.extend(cur.take());
            }
            if let Some(first) = pieces.next() {
                cur.get_or_insert_with(String::new).push_str(first);
            }
            for piece in pieces {
                fields.extend(cur.take());
                cur = Some(piece.to_string());
            }
            if text.ends_with(|c: char| c.is_ascii_whitespace()) {
                fields.extend(cur.take());
            }
        }
        fields.extend(cur);
        Ok(fields)
    }

    /// A word expanded without field splitting (assignments, redirection
    /// targets).
    pub(crate) async fn expand_joined(&mut self, w: &Word) -> Result<String, Exit> {
        let mut out = String::new();
        for seg in &w.0 {
            out.push_str(&self.expand_part(&seg.part).await?);
        }
        Ok(out)
    }

    async fn expand_part(&mut self, part: &Part) -> Result<String, Exit> {
        Ok(match part {
            Part::Lit(s) => s.clone(),
            Part::Var(name) => self.param(name),
            Part::Sub(script) => self.substitute(script).await,
            Part::Arith(expr) => {
                let text = self.expand_inline(expr);
                match arith(&text, &self.vars) {
                    Ok(n) => n.to_string(),
                    Err(msg) => {
                        self.warn(format!("sh: arithmetic expression: {msg}: \"{expr}\""));
                        return Err(Exit(2));
                    }
                }
            }
        })
    }

    fn param(&self, name: &str) -> String {
        match name {
            "$" => self.pid.to_string(),
            "!" => self.last_bg.map(|p| p.to_string()).unwrap_or_default(),
            "?" => self.status.to_string(),
            "#" => (self.args.len().saturating_sub(1)).to_string(),
            "@" | "*" => self.args.get(1..).unwrap_or_default().join(" "),
            _ => match name.parse::<usize>() {
                Ok(i) => self.args.get(i).cloned().unwrap_or_default(),
                Err(_) => self.vars.get(name).cloned().unwrap_or_default(),
            },
        }
    }

    /// `$name` inside an arithmetic expression.
    fn expand_inline(&self, expr: &str) -> String {
        let mut out = String::new();
        let mut chars = expr.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '$' {
                out.push(c);
                continue;
            }
            let mut name = String::new();
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push_str(&self.param(&name));
        }
        out
    }

    /// `$(script)`: its stdout without trailing newlines.
    async fn substitute(&mut self, script: &str) -> String {
        let list = match super::parse::parse(script) {
            Ok(l) => l,
            Err(msg) => {
                self.warn(format!("sh: {msg}"));
                return String::new();
            }
        };
        let buf = Arc::new(Mutex::new(Vec::new()));
        let mut sub = self.child(self.pid);
        sub.stdout = Output::Buffer(buf.clone());
        self.status = sub.run_script(&list).await;
        let data = std::mem::take(&mut *buf.lock().unwrap_or_else(|p| p.into_inner()));
        String::from_utf8_lossy(&data)
            .trim_end_matches('\n')
            .to_string()
    }
}

/// The body of `( list ) &` when that is all the job is.
fn single_subshell(ao: &AndOr) -> Option<&List> {
    match (
        ao.rest.is_empty(),
        ao.first.negate,
        ao.first.commands.as_slice(),
    ) {
        (true, false, [Command::Subshell { body, redirs }]) if redirs.is_empty() => Some(body),
        _ => None,
    }
}

/// Evaluates integer arithmetic: `+ - * / %`, comparisons, parentheses,
/// unary minus; names are variables (unset or non-numeric is 0).
pub(crate) fn arith(
    expr: &str,
    vars: &std::collections::BTreeMap<String, String>,
) -> Result<i64, String> {
    let toks: Vec<String> = {
        let mut t = Vec::new();
        let chars: Vec<char> = expr.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c.is_whitespace() {
                i += 1;
            } else if c.is_ascii_alphanumeric() || c == '_' {
                let n = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                t.push(chars[i..i + n].iter().collect());
                i += n;
            } else {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let op = if ["<=", ">=", "==", "!="].contains(&two.as_str()) {
                    two
                } else {
                    c.to_string()
                };
                i += op.len();
                t.push(op);
            }
        }
        t
    };
    let mut p = Arith { toks, at: 0, vars };
    let v = p.binary(0)?;
    match p.toks.get(p.at) {
        None => Ok(v),
        Some(t) => Err(format!("unexpected \"{t}\"")),
    }
}

struct Arith<'a> {
    toks: Vec<String>,
    at: usize,
    vars: &'a std::collections::BTreeMap<String, String>,
}

impl Arith<'_> {
    fn binary(&mut self, min_prec: u8) -> Result<i64, String> {
        let mut lhs = self.unary()?;
        loop {
            let Some(op) = self.toks.get(self.at).cloned() else {
                return Ok(lhs);
            };
            let prec = match op.as_str() {
                "==" | "!=" => 1,
                "<" | ">" | "<=" | ">=" => 2,
                "+" | "-" => 3,
                "*" | "/" | "%" => 4,
                _ => return Ok(lhs),
            };
            if prec < min_prec {
                return Ok(lhs);
            }
            self.at += 1;
            let rhs = self.binary(prec + 1)?;
            lhs = match op.as_str() {
                "+" => lhs.wrapping_add(rhs),
                "-" => lhs.wrapping_sub(rhs),
                "*" => lhs.wrapping_mul(rhs),
                "/" | "%" if rhs == 0 => return Err("division by zero".to_string()),
                "/" => lhs.wrapping_div(rhs),
                "%" => lhs.wrapping_rem(rhs),
                "==" => i64::from(lhs == rhs),
                "!=" => i64::from(lhs != rhs),
                "<" => i64::from(lhs < rhs),
                ">" => i64::from(lhs > rhs),
                "<=" => i64::from(lhs <= rhs),
                _ => i64::from(lhs >= rhs),
            };
        }
    }

    fn unary(&mut self) -> Result<i64, String> {
        let tok = self
            .toks
            .get(self.at)
            .cloned()
            .ok_or("expression expected")?;
        self.at += 1;
        match tok.as_str() {
            "-" => Ok(self.unary()?.wrapping_neg()),
            "+" => self.unary(),
            "(" => {
                let v = self.binary(0)?;
                if self.toks.get(self.at).map(String::as_str) != Some(")") {
                    return Err("missing )".to_string());
                }
                self.at += 1;
                Ok(v)
            }
            t if t.starts_with(|c: char| c.is_ascii_digit()) => {
                t.parse().map_err(|_| format!("bad number \"{t}\""))
            }
            t if t.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') => Ok(self
                .vars
                .get(t)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)),
            t => Err(format!("unexpected \"{t}\"")),
        }
    }
}
