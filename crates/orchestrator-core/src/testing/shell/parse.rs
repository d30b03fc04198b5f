//! The fake shell's grammar: words (quotes, `$name`, `$(...)`, `$((...))`),
//! redirections, pipelines, `&&`/`||`, `;`/`&` lists, `( )`, `if` and
//! `while`: the part of POSIX sh that test scripts use.

/// What one piece of a word is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    /// Literal text.
    Lit(String),
    /// `$name`, `${name}` or a special parameter (`$$`, `$!`, `$?`, `$1`).
    Var(String),
    /// `$(script)`.
    Sub(String),
    /// `$((expression))`.
    Arith(String),
}

/// A piece of a word and whether it was quoted (quoted pieces are not split).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seg {
    pub(crate) part: Part,
    pub(crate) quoted: bool,
}

/// One shell word, before expansion.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Word(pub(crate) Vec<Seg>);

impl Word {
    /// The word's text when it is one unquoted literal (keywords,
    /// assignments).
    pub(crate) fn literal(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Seg {
                part: Part::Lit(s),
                quoted: false,
            }] => Some(s),
            _ => None,
        }
    }
}

/// How a redirection opens its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedirOp {
    /// `>`: create or truncate.
    Out,
    /// `>>`: append.
    Append,
    /// `<`: read.
    In,
    /// `>&N`: a copy of descriptor N.
    Dup,
}

/// One redirection of descriptor `fd`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Redir {
    pub(crate) fd: u8,
    pub(crate) op: RedirOp,
    pub(crate) target: Word,
}

/// One command of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// `NAME=value... word... redirection...`
    Simple {
        assigns: Vec<(String, Word)>,
        words: Vec<Word>,
        redirs: Vec<Redir>,
    },
    /// `( list )`, run in a child process.
    Subshell { body: List, redirs: Vec<Redir> },
    /// `if list; then list; [elif list; then list;]... [else list;] fi`
    If {
        branches: Vec<(List, List)>,
        otherwise: Option<List>,
    },
    /// `while list; do list; done`
    While { cond: List, body: List },
}

/// `[!] command [| command]...`
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pipeline {
    pub(crate) negate: bool,
    pub(crate) commands: Vec<Command>,
}

/// `pipeline [&& pipeline | || pipeline]...`; `true` in `rest` means `&&`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AndOr {
    pub(crate) first: Pipeline,
    pub(crate) rest: Vec<(bool, Pipeline)>,
}

/// A list of and-or lists, each run in the foreground or (`&`) background.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct List(pub(crate) Vec<(AndOr, bool)>);

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(Word),
    Op(&'static str),
    IoNum(u8),
}

/// Parses a script.
pub(crate) fn parse(script: &str) -> Result<List, String> {
    let toks = lex(script)?;
    let mut p = Parser { toks, at: 0 };
    let list = p.list(&[])?;
    match p.toks.get(p.at) {
        None => Ok(list),
        Some(t) => Err(format!("syntax error: unexpected {}", show(t))),
    }
}

fn show(t: &Tok) -> String {
    match t {
        Tok::Op("\n") => "newline".to_string(),
        Tok::Op(o) => format!("\"{o}\""),
        Tok::Word(w) => format!("\"{}\"", w.literal().unwrap_or("word")),
        Tok::IoNum(n) => n.to_string(),
    }
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let op = match (c, next) {
            (' ' | '\t', _) => {
                i += 1;
                continue;
            }
            ('\\', Some('\n')) => {
                i += 2;
                continue;
            }
            ('#', _) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            ('&', Some('&')) => "&&",
            ('|', Some('|')) => "||",
            ('>', Some('>')) => ">>",
            ('>', Some('&')) => ">&",
            ('\n', _) => "\n",
            (';', _) => ";",
            ('&', _) => "&",
            ('|', _) => "|",
            ('(', _) => "(",
            (')', _) => ")",
            ('<', _) => "<",
            ('>', _) => ">",
            _ => {
                let (word, end) = lex_word(&chars, i)?;
                let io = word.literal().and_then(|l| l.parse::<u8>().ok());
                match (io, chars.get(end)) {
                    (Some(n), Some('<' | '>')) => toks.push(Tok::IoNum(n)),
                    _ => toks.push(Tok::Word(word)),
                }
                i = end;
                continue;
            }
        };
        i += op.len();
        toks.push(Tok::Op(op));
    }
    Ok(toks)
}

fn is_delim(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>'
    )
}

/// Appends literal text to the word, merging with a literal of the same
/// quoting before it.
fn push_lit(w: &mut Word, text: &str, quoted: bool) {
    if let Some(Seg {
        part: Part::Lit(s),
        quoted: q,
    }) = w.0.last_mut()
    {
        if *q == quoted {
            s.push_str(text);
            return;
        }
    }
    w.0.push(Seg {
        part: Part::Lit(text.to_string()),
        quoted,
    });
}

fn lex_word(chars: &[char], mut i: usize) -> Result<(Word, usize), String> {
    let mut w = Word::default();
    while i < chars.len() && !is_delim(chars[i]) {
        match chars[i] {
            '\'' => {
                let end = (i + 1..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .ok_or("unterminated quoted string")?;
                let text: String = chars[i + 1..end].iter().collect();
                push_lit(&mut w, &text, true);
                i = end + 1;
            }
            '"' => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated quoted string".to_string()),
                        Some('"') => break,
                        Some('\\') if matches!(chars.get(i + 1), Some('$' | '`' | '"' | '\\')) => {
                            push_lit(&mut w, &chars[i + 1].to_string(), true);
                            i += 2;
                        }
                        Some('$') => {
                            let (part, end) = lex_dollar(chars, i)?;
                            w.0.push(Seg { part, quoted: true });
                            i = end;
                        }
                        Some(c) => {
                            push_lit(&mut w, &c.to_string(), true);
                            i += 1;
                        }
                    }
                }
                // An empty "" still makes a (quoted, empty) word.
                if w.0.is_empty() {
                    push_lit(&mut w, "", true);
                }
                i += 1;
            }
            '\\' => {
                if let Some(c) = chars.get(i + 1) {
                    push_lit(&mut w, &c.to_string(), true);
                }
                i += 2;
            }
            '$' => {
                let (part, end) = lex_dollar(chars, i)?;
                w.0.push(Seg {
                    part,
                    quoted: false,
                });
                i = end;
            }
            c => {
                push_lit(&mut w, &c.to_string(), false);
                i += 1;
            }
        }
    }
    Ok((w, i))
}

/// Lexes the expansion starting at the `$` at `i`; returns it and where it
/// ends.
fn lex_dollar(chars: &[char], i: usize) -> Result<(Part, usize), String> {
    let rest = &chars[i + 1..];
    match rest.first() {
        Some('(') if rest.get(1) == Some(&'(') => {
            // The `)` closing the outer `(` ends `$((...))`.
            let end = matching(chars, i + 1)?;
            if end < i + 4 || chars[end - 1] != ')' {
                return Err("syntax error: missing ))".to_string());
            }
            let expr: String = chars[i + 3..end - 1].iter().collect();
            Ok((Part::Arith(expr), end + 1))
        }
        Some('(') => {
            let end = matching(chars, i + 1)?;
            let script: String = chars[i + 2..end].iter().collect();
            Ok((Part::Sub(script), end + 1))
        }
        Some('{') => {
            let end = (i + 2..chars.len())
                .find(|&j| chars[j] == '}')
                .ok_or("syntax error: missing }")?;
            Ok((Part::Var(chars[i + 2..end].iter().collect()), end + 1))
        }
        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
            let n = rest
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            Ok((Part::Var(rest[..n].iter().collect()), i + 1 + n))
        }
        Some(c) if c.is_ascii_digit() || "$!?#@*-".contains(*c) => {
            Ok((Part::Var(c.to_string()), i + 2))
        }
        _ => Ok((Part::Lit("$".to_string()), i + 1)),
    }
}

/// The index of the `)` that closes the `(` at `open`, skipping quotes.
fn matching(chars: &[char], open: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            q @ ('\'' | '"') => {
                i = (i + 1..chars.len())
                    .find(|&j| chars[j] == q)
                    .ok_or("unterminated quoted string")?;
            }
            '\\' => i += 1,
            _ => {}
        }
        i += 1;
    }
    Err("syntax error: missing )".to_string())
}

struct Parser {
    toks: Vec<Tok>,
    at: usize,
}

const KEYWORDS: [&str; 8] = ["if", "then", "elif", "else", "fi", "while", "do", "done"];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn keyword(&self) -> Option<&'static str> {
        match self.peek() {
            Some(Tok::Word(w)) => {
                let l = w.literal()?;
                KEYWORDS.iter().copied().find(|k| *k == l)
            }
            _ => None,
        }
    }

    fn expect_keyword(&mut self, k: &str) -> Result<(), String> {
        if self.keyword() == Some(k) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("syntax error: expected \"{k}\""))
        }
    }

    fn skip_newlines(&mut self) {
        while self.is_op("\n") {
            self.at += 1;
        }
    }

    /// A list up to the end, a `)` or one of the keywords in `until`.
    fn list(&mut self, until: &[&str]) -> Result<List, String> {
        let mut items = Vec::new();
        loop {
            while self.is_op("\n") || self.is_op(";") {
                self.at += 1;
            }
            if self.peek().is_none()
                || self.is_op(")")
                || self.keyword().is_some_and(|k| until.contains(&k))
            {
                return Ok(List(items));
            }
            let ao = self.and_or()?;
            let background = self.is_op("&");
            if background || self.is_op(";") || self.is_op("\n") {
                self.at += 1;
            }
            items.push((ao, background));
        }
    }

    fn and_or(&mut self) -> Result<AndOr, String> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        while self.is_op("&&") || self.is_op("||") {
            let and = self.is_op("&&");
            self.at += 1;
            self.skip_newlines();
            rest.push((and, self.pipeline()?));
        }
        Ok(AndOr { first, rest })
    }

    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let negate = matches!(self.peek(), Some(Tok::Word(w)) if w.literal() == Some("!"));
        if negate {
            self.at += 1;
        }
        let mut commands = vec![self.command()?];
        while self.is_op("|") {
            self.at += 1;
            self.skip_newlines();
            commands.push(self.command()?);
        }
        Ok(Pipeline { negate, commands })
    }

    fn command(&mut self) -> Result<Command, String> {
        if self.is_op("(") {
            self.at += 1;
            let body = self.list(&[])?;
            if !self.is_op(")") {
                return Err("syntax error: missing )".to_string());
            }
            self.at += 1;
            let redirs = self.redirs()?;
            return Ok(Command::Subshell { body, redirs });
        }
        match self.keyword() {
            Some("if") => self.if_command(),
            Some("while") => {
                self.at += 1;
                let cond = self.list(&["do"])?;
                self.expect_keyword("do")?;
                let body = self.list(&["done"])?;
                self.expect_keyword("done")?;
                Ok(Command::While { cond, body })
            }
            Some(k) => Err(format!("syntax error: unexpected \"{k}\"")),
            None => self.simple(),
        }
    }

    fn if_command(&mut self) -> Result<Command, String> {
        let mut branches = Vec::new();
        let mut otherwise = None;
        self.at += 1;
        loop {
            let cond = self.list(&["then"])?;
            self.expect_keyword("then")?;
            let body = self.list(&["elif", "else", "fi"])?;
            branches.push((cond, body));
            match self.keyword() {
                Some("elif") => self.at += 1,
                Some("else") => {
                    self.at += 1;
                    otherwise = Some(self.list(&["fi"])?);
                    self.expect_keyword("fi")?;
                    break;
                }
                _ => {
                    self.expect_keyword("fi")?;
                    break;
                }
            }
        }
        Ok(Command::If {
            branches,
            otherwise,
        })
    }

    fn redirs(&mut self) -> Result<Vec<Redir>, String> {
        let mut out = Vec::new();
        while let Some(r) = self.redir()? {
            out.push(r);
        }
        Ok(out)
    }

    fn redir(&mut self) -> Result<Option<Redir>, String> {
        let fd = match self.peek() {
            Some(Tok::IoNum(n)) => {
                let n = *n;
                self.at += 1;
                Some(n)
            }
            _ => None,
        };
        let op = match self.peek() {
            Some(Tok::Op(">")) => RedirOp::Out,
            Some(Tok::Op(">>")) => RedirOp::Append,
            Some(Tok::Op("<")) => RedirOp::In,
            Some(Tok::Op(">&")) => RedirOp::Dup,
            _ if fd.is_some() => return Err("syntax error: bad redirection".to_string()),
            _ => return Ok(None),
        };
        self.at += 1;
        let target = match self.peek() {
            Some(Tok::Word(w)) => w.clone(),
            _ => return Err("syntax error: redirection without a target".to_string()),
        };
        self.at += 1;
        let fd = fd.unwrap_or(if op == RedirOp::In { 0 } else { 1 });
        Ok(Some(Redir { fd, op, target }))
    }

    fn simple(&mut self) -> Result<Command, String> {
        let (mut assigns, mut words, mut redirs) = (Vec::new(), Vec::new(), Vec::new());
        loop {
            if let Some(r) = self.redir()? {
                redirs.push(r);
                continue;
            }
            let Some(Tok::Word(w)) = self.peek() else {
                break;
            };
            let w = w.clone();
            self.at += 1;
            match assignment(&w) {
                Some(a) if words.is_empty() => assigns.push(a),
                _ => words.push(w),
            }
        }
        if assigns.is_empty() && words.is_empty() && redirs.is_empty() {
            return Err(match self.peek() {
                Some(t) => format!("syntax error: unexpected {}", show(t)),
                None => "syntax error: unexpected end of file".to_string(),
            });
        }
        Ok(Command::Simple {
            assigns,
            words,
            redirs,
        })
    }
}

/// `NAME=value` as (NAME, value).
fn assignment(w: &Word) -> Option<(String, Word)> {
    let Some(Seg {
        part: Part::Lit(first),
        quoted: false,
    }) = w.0.first()
    else {
        return None;
    };
    let (name, value) = first.split_once('=')?;
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return None;
    }
    let mut rest = Word::default();
    if !value.is_empty() {
        push_lit(&mut rest, value, false);
    }
    rest.0.extend(w.0[1..].iter().cloned());
    Some((name.to_string(), rest))
}
