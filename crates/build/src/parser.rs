//! The Dockerfile parser: text → [`Dockerfile`], every syntax error found before anything runs.
//!
//! Follows the Dockerfile reference: parser directives (`# syntax=`, `# escape=`) before the
//! first instruction, `#` comment lines (also inside continuations), the escape character at a
//! line's end continuing it, instructions case-insensitive, exec form (a JSON array) or shell
//! form, `--flag=value` options, heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`) after RUN, COPY and
//! ADD. Variable substitution happens later, when the instruction is evaluated with its
//! stage's variables ([`crate::words`]); here words are only checked for balanced quotes.

use crate::words::{Lexer, split_raw};

/// An instruction keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cmd {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
}

impl Cmd {
    pub fn parse(s: &str) -> Option<Cmd> {
        Some(match s.to_ascii_uppercase().as_str() {
            "ADD" => Cmd::Add,
            "ARG" => Cmd::Arg,
            "CMD" => Cmd::Cmd,
            "COPY" => Cmd::Copy,
            "ENTRYPOINT" => Cmd::Entrypoint,
            "ENV" => Cmd::Env,
            "EXPOSE" => Cmd::Expose,
            "FROM" => Cmd::From,
            "HEALTHCHECK" => Cmd::Healthcheck,
            "LABEL" => Cmd::Label,
            "MAINTAINER" => Cmd::Maintainer,
            "ONBUILD" => Cmd::Onbuild,
            "RUN" => Cmd::Run,
            "SHELL" => Cmd::Shell,
            "STOPSIGNAL" => Cmd::Stopsignal,
            "USER" => Cmd::User,
            "VOLUME" => Cmd::Volume,
            "WORKDIR" => Cmd::Workdir,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Cmd::Add => "ADD",
            Cmd::Arg => "ARG",
            Cmd::Cmd => "CMD",
            Cmd::Copy => "COPY",
            Cmd::Entrypoint => "ENTRYPOINT",
            Cmd::Env => "ENV",
            Cmd::Expose => "EXPOSE",
            Cmd::From => "FROM",
            Cmd::Healthcheck => "HEALTHCHECK",
            Cmd::Label => "LABEL",
            Cmd::Maintainer => "MAINTAINER",
            Cmd::Onbuild => "ONBUILD",
            Cmd::Run => "RUN",
            Cmd::Shell => "SHELL",
            Cmd::Stopsignal => "STOPSIGNAL",
            Cmd::User => "USER",
            Cmd::Volume => "VOLUME",
            Cmd::Workdir => "WORKDIR",
        }
    }

    /// The flags an instruction accepts, each with whether it needs a value.
    fn flags(self) -> &'static [(&'static str, bool)] {
        match self {
            Cmd::From => &[("platform", true)],
            Cmd::Run => &[("network", true), ("mount", true), ("security", true)],
            Cmd::Copy => &[("from", true), ("chown", true), ("chmod", true), ("link", false), ("parents", false)],
            Cmd::Add => {
                &[("chown", true), ("chmod", true), ("checksum", true), ("link", false), ("keep-git-dir", false)]
            }
            Cmd::Healthcheck => &[
                ("interval", true),
                ("timeout", true),
                ("start-period", true),
                ("start-interval", true),
                ("retries", true),
            ],
            _ => &[],
        }
    }

    fn takes_heredocs(self) -> bool {
        matches!(self, Cmd::Run | Cmd::Copy | Cmd::Add)
    }

    /// Whether a JSON array is read as the exec form.
    fn json_form(self) -> bool {
        matches!(self, Cmd::Run | Cmd::Cmd | Cmd::Entrypoint | Cmd::Shell | Cmd::Volume | Cmd::Copy | Cmd::Add)
    }
}

/// An instruction's arguments: exec form (a JSON array) or the shell form's raw text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    Exec(Vec<String>),
    Shell(String),
}

/// A here-document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    pub name: String,
    pub content: String,
    /// Unquoted marker: variables are substituted in the content.
    pub expand: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    pub cmd: Cmd,
    /// `--name=value` options, in order; a bare `--name` has an empty value.
    pub flags: Vec<(String, String)>,
    pub args: Args,
    pub heredocs: Vec<Heredoc>,
    /// The instruction as written, continuations joined (for messages and history).
    pub original: String,
}

impl Instruction {
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The shell form's text (or the exec form's words joined).
    pub fn text(&self) -> String {
        match &self.args {
            Args::Shell(s) => s.clone(),
            Args::Exec(v) => v.join(" "),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    pub syntax: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// A syntax error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn err(line: usize, message: impl Into<String>) -> ParseError {
    ParseError { line, message: message.into() }
}

/// Reads the parser directives at the top: `# key=value` lines before anything else.
fn directives(lines: &[&str]) -> Result<(char, Option<String>, usize), ParseError> {
    let mut escape = '\\';
    let mut syntax = None;
    let mut seen = std::collections::HashSet::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i].trim();
        let Some(body) = l.strip_prefix('#') else { break };
        let Some((k, v)) = body.split_once('=') else { break };
        let k = k.trim().to_ascii_lowercase();
        if k.is_empty() || k.contains(char::is_whitespace) {
            break;
        }
        let v = v.trim();
        if !seen.insert(k.clone()) {
            return Err(err(i + 1, format!("only one {k} parser directive can be used")));
        }
        match k.as_str() {
            "escape" => {
                escape = match v {
                    "\\" => '\\',
                    "`" => '`',
                    other => return Err(err(i + 1, format!("invalid escape token '{other}' does not match ` or \\"))),
                }
            }
            "syntax" => syntax = Some(v.to_owned()),
            _ => {}
        }
        i += 1;
    }
    Ok((escape, syntax, i))
}

/// Parses a whole Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let (escape, syntax, mut i) = directives(&lines)?;
    let mut instructions = Vec::new();
    while i < lines.len() {
        let first = lines[i];
        let t = first.trim();
        if t.is_empty() || t.starts_with('#') {
            i += 1;
            continue;
        }
        let start = i + 1;
        // Join continuations; comment and empty lines inside are dropped.
        let mut logical = String::new();
        let mut cur = first.trim_start().to_owned();
        loop {
            let trimmed = cur.trim_end();
            if let Some(head) = trimmed.strip_suffix(escape) {
                logical.push_str(head);
                i += 1;
                // Skip comments and blank lines inside the continuation.
                while i < lines.len() {
                    let n = lines[i].trim();
                    if n.starts_with('#') || n.is_empty() {
                        i += 1;
                    } else {
                        break;
                    }
                }
                if i >= lines.len() {
                    break;
                }
                cur = lines[i].to_owned();
            } else {
                logical.push_str(&cur);
                i += 1;
                break;
            }
        }
        let (ins, consumed) = parse_instruction(&logical, start, escape, &lines[i..])?;
        i += consumed;
        instructions.push(ins);
    }
    Ok(Dockerfile { escape, syntax, instructions })
}

/// Parses one logical line. `rest` are the lines after it, read for heredoc bodies; returns
/// how many of them were consumed.
pub fn parse_instruction(
    logical: &str,
    line: usize,
    escape: char,
    rest: &[&str],
) -> Result<(Instruction, usize), ParseError> {
    let logical = logical.trim();
    let (word, after) = match logical.find(char::is_whitespace) {
        Some(p) => (&logical[..p], logical[p..].trim_start()),
        None => (logical, ""),
    };
    let cmd =
        Cmd::parse(word).ok_or_else(|| err(line, format!("unknown instruction: {}", word.to_ascii_uppercase())))?;
    // Flags: leading `--name[=value]` words.
    let mut flags = Vec::new();
    let mut body = after;
    while let Some(f) = body.strip_prefix("--") {
        let end = f.find(char::is_whitespace).unwrap_or(f.len());
        let tok = &f[..end];
        if tok.is_empty() {
            break;
        }
        let (name, value) = match tok.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (tok, None),
        };
        let Some((_, needs_value)) = cmd.flags().iter().find(|(n, _)| *n == name) else {
            return Err(err(line, format!("unknown flag: --{name} for {}", cmd.name())));
        };
        let value = match (value, needs_value) {
            (Some(v), _) => {
                if *needs_value && v.is_empty() {
                    return Err(err(line, format!("missing a value on flag: --{name}")));
                }
                v
            }
            (None, true) => return Err(err(line, format!("missing a value on flag: --{name}"))),
            (None, false) => "",
        };
        flags.push((name.to_owned(), value.to_owned()));
        body = f[end..].trim_start();
    }
    if body.is_empty() && !matches!(cmd, Cmd::Healthcheck) {
        return Err(err(line, format!("{} requires at least one argument", cmd.name())));
    }
    // Heredocs.
    let mut heredocs = Vec::new();
    let mut consumed = 0;
    if cmd.takes_heredocs() && !body.starts_with('[') {
        for (name, chomp, expand) in heredoc_markers(body) {
            let mut content = String::new();
            let mut found = false;
            while consumed < rest.len() {
                let l = rest[consumed];
                consumed += 1;
                let cmp = if chomp { l.trim_start_matches('\t') } else { l };
                if cmp == name {
                    found = true;
                    break;
                }
                content.push_str(cmp);
                content.push('\n');
            }
            if !found {
                return Err(err(line, format!("unterminated heredoc: no line `{name}` ends the here-document")));
            }
            heredocs.push(Heredoc { name, content, expand });
        }
    }
    let args = if cmd.json_form() && body.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(body) {
            Ok(v) => Args::Exec(v),
            Err(_) if cmd == Cmd::Shell => {
                return Err(err(line, "SHELL requires the arguments to be in JSON form"));
            }
            Err(_) => Args::Shell(body.to_owned()),
        }
    } else if cmd == Cmd::Shell {
        return Err(err(line, "SHELL requires the arguments to be in JSON form"));
    } else {
        Args::Shell(body.to_owned())
    };
    let ins = Instruction { line, cmd, flags, args, heredocs, original: logical.to_owned() };
    validate(&ins, escape)?;
    Ok((ins, consumed))
}

/// The heredoc markers in a line: (name, strip leading tabs, expand variables).
pub fn heredoc_markers(s: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i + 1 < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == b'\'' || c == b'"' {
            quote = Some(c);
            i += 1;
            continue;
        }
        if c == b'<' && b[i + 1] == b'<' && b.get(i + 2) != Some(&b'<') {
            let mut j = i + 2;
            let chomp = b.get(j) == Some(&b'-');
            if chomp {
                j += 1;
            }
            let q = match b.get(j) {
                Some(&x) if x == b'"' || x == b'\'' => {
                    j += 1;
                    Some(x)
                }
                _ => None,
            };
            let start = j;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            if j > start {
                let name = s[start..j].to_owned();
                if let Some(q) = q {
                    if b.get(j) != Some(&q) {
                        i = j;
                        continue;
                    }
                    j += 1;
                }
                out.push((name, chomp, q.is_none()));
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Checks what can be checked before evaluation: quotes, the shape of key=value lists.
fn validate(ins: &Instruction, escape: char) -> Result<(), ParseError> {
    let line = ins.line;
    let text = match &ins.args {
        Args::Shell(s) => s.as_str(),
        Args::Exec(_) => "",
    };
    let quoted = |s: &str| split_raw(s, escape).map_err(|m| err(line, format!("{}: {m}", ins.cmd.name())));
    match ins.cmd {
        Cmd::Env | Cmd::Label => {
            parse_key_values(text, escape, ins.cmd).map_err(|m| err(line, m))?;
        }
        Cmd::Arg => {
            let words = quoted(text)?;
            for w in &words {
                let name = w.split_once('=').map(|(k, _)| k).unwrap_or(w);
                if name.is_empty() {
                    return Err(err(line, format!("ARG names can not be blank: `{w}`")));
                }
            }
        }
        Cmd::From => {
            let words = quoted(text)?;
            match words.len() {
                1 => {}
                3 if words[1].eq_ignore_ascii_case("as") => {
                    let n = &words[2];
                    let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                        && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                    if !ok {
                        return Err(err(
                            line,
                            format!(
                                "invalid name for build stage: \"{n}\", name can't start with a number or contain symbols"
                            ),
                        ));
                    }
                }
                _ => return Err(err(line, "FROM requires either one or three arguments")),
            }
        }
        Cmd::Copy | Cmd::Add => {
            let n = match &ins.args {
                Args::Exec(v) => v.len(),
                Args::Shell(s) => quoted(s)?.len(),
            };
            if n < 2 {
                return Err(err(
                    line,
                    format!(
                        "{} requires at least two arguments, but only one was provided. Destination could not be determined",
                        ins.cmd.name()
                    ),
                ));
            }
            if let Some(m) = ins.flag("chmod")
                && !m.contains('$')
                && u32::from_str_radix(m, 8).map_or(true, |v| v > 0o7777)
            {
                return Err(err(line, format!("invalid --chmod value `{m}`: expected an octal mode")));
            }
        }
        Cmd::Healthcheck => {
            let t = text.trim();
            let up = t.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            match up.as_str() {
                "NONE" => {
                    if t.split_whitespace().count() > 1 || !ins.flags.is_empty() {
                        return Err(err(line, "HEALTHCHECK NONE takes no arguments"));
                    }
                }
                "CMD" => {
                    if t[3..].trim().is_empty() {
                        return Err(err(line, "HEALTHCHECK CMD requires a command"));
                    }
                }
                _ => return Err(err(line, "HEALTHCHECK requires NONE or CMD followed by a command")),
            }
            for (k, v) in &ins.flags {
                if k == "retries" {
                    if v.parse::<u32>().is_err() {
                        return Err(err(line, format!("invalid --retries value `{v}`: expected a whole number")));
                    }
                } else if crate::builder::parse_duration(v).is_none() {
                    return Err(err(line, format!("invalid --{k} value `{v}`: expected a duration such as 30s")));
                }
            }
        }
        Cmd::Onbuild => {
            let inner = text.trim();
            let word = inner.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
            match word.as_str() {
                "ONBUILD" => return Err(err(line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")),
                "FROM" | "MAINTAINER" => {
                    return Err(err(line, format!("{word} isn't allowed as an ONBUILD trigger")));
                }
                _ => {}
            }
            parse_instruction(inner, line, escape, &[])?;
        }
        Cmd::Expose | Cmd::User | Cmd::Workdir | Cmd::Stopsignal | Cmd::Maintainer => {
            quoted(text)?;
        }
        Cmd::Volume => {
            if let Args::Shell(s) = &ins.args {
                quoted(s)?;
            }
        }
        Cmd::Run | Cmd::Cmd | Cmd::Entrypoint | Cmd::Shell => {
            if let Some(m) = ins.flag("mount") {
                return Err(err(line, format!("RUN --mount={m} is not supported by berth's builder")));
            }
            if let Some(n) = ins.flag("network")
                && !matches!(n, "default" | "none" | "host")
            {
                return Err(err(line, format!("invalid RUN --network value `{n}`: expected default, none or host")));
            }
        }
    }
    Ok(())
}

/// ENV and LABEL arguments: `key=value …`, or the older `key value` (ENV) form. Keys and
/// values are returned raw (quotes in place) for substitution later.
pub fn parse_key_values(text: &str, escape: char, cmd: Cmd) -> Result<Vec<(String, String)>, String> {
    let words = split_raw(text, escape).map_err(|m| format!("{}: {m}", cmd.name()))?;
    if words.is_empty() {
        return Err(format!("{} requires at least one argument", cmd.name()));
    }
    if !words[0].contains('=') {
        // The old form: the first word is the key, the rest of the line the value.
        let key = &words[0];
        let value = text.trim_start()[key.len()..].trim();
        if value.is_empty() {
            return Err(format!("{} must have two arguments", cmd.name()));
        }
        return Ok(vec![(key.clone(), value.to_owned())]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!("Syntax error - can't find = in \"{w}\". Must be of the form: name=value"));
        };
        if k.is_empty() {
            return Err(format!("{} names can not be blank", cmd.name()));
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// The substitution-free processing of a key (for messages and checks).
pub fn lexer(escape: char) -> Lexer {
    Lexer::new(escape)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Dockerfile {
        parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn directives_comments_continuations() {
        let d = p(
            "# syntax=docker/dockerfile:1\n# escape=`\n\nFROM busybox\n# c\nRUN echo a `\n  # inside\n\n  b\nrun echo c\n",
        );
        assert_eq!(d.escape, '`');
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.instructions.len(), 3);
        assert_eq!(d.instructions[1].args, Args::Shell("echo a   b".into()));
        assert_eq!(d.instructions[1].line, 6);
        assert_eq!(d.instructions[2].cmd, Cmd::Run);
        assert_eq!(d.instructions[2].line, 10);
        // A directive after an instruction is a comment.
        let d = p("FROM x\n# escape=`\nRUN a \\\n b");
        assert_eq!(d.escape, '\\');
        assert_eq!(d.instructions[1].args, Args::Shell("a  b".into()));
    }

    #[test]
    fn exec_and_shell_forms_and_flags() {
        let d = p(
            "FROM --platform=linux/amd64 a AS b\nCMD [\"echo\", \"hi\"]\nCMD [not json\nCOPY --from=b --chown=1:2 x y\n",
        );
        assert_eq!(d.instructions[0].flag("platform"), Some("linux/amd64"));
        assert_eq!(d.instructions[1].args, Args::Exec(vec!["echo".into(), "hi".into()]));
        assert_eq!(d.instructions[2].args, Args::Shell("[not json".into()));
        assert_eq!(d.instructions[3].flag("from"), Some("b"));
        assert_eq!(d.instructions[3].flag("chown"), Some("1:2"));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("FROM a\nFOO bar\n").expect_err("unknown");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unknown instruction: FOO"), "{e}");
        let e = parse("FROM a\nCOPY --nope=1 a b\n").expect_err("flag");
        assert!(e.message.contains("unknown flag: --nope"), "{e}");
        let e = parse("FROM a\n\nENV A=\"open\n").expect_err("quote");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("double-quote"), "{e}");
        let e = parse("FROM a\nRUN <<EOF\necho\n").expect_err("heredoc");
        assert!(e.message.contains("unterminated heredoc"), "{e}");
        assert!(parse("FROM a\nRUN\n").expect_err("empty").message.contains("at least one argument"));
        assert!(parse("FROM a\nCOPY x\n").expect_err("dest").message.contains("two arguments"));
        assert!(parse("FROM a b\n").is_err());
        assert!(parse("FROM a\nONBUILD ONBUILD RUN x\n").is_err());
        assert!(parse("FROM a\nHEALTHCHECK --interval=xs CMD true\n").is_err());
        assert!(parse("FROM a\nSHELL sh -c\n").is_err());
        assert!(parse("FROM a\nENV A\n").is_err());
        assert!(parse("FROM a\nENV A=1 B\n").is_err());
    }

    #[test]
    fn heredocs() {
        let d = p(
            "FROM a\nRUN <<EOF\necho one\necho two\nEOF\nCOPY <<-\"X\" <<Y /dst/\n\tlit $A\n\tX\nexp $A\nY\nRUN true\n",
        );
        assert_eq!(d.instructions.len(), 4);
        let h = &d.instructions[1].heredocs;
        assert_eq!(h[0].content, "echo one\necho two\n");
        let h = &d.instructions[2].heredocs;
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].content, "lit $A\n");
        assert!(!h[0].expand);
        assert_eq!(h[1].content, "exp $A\n");
        assert!(h[1].expand);
        assert_eq!(d.instructions[3].line, 11);
    }

    /// The parser and the word processor never panic, whatever the input (a quickcheck-style
    /// loop over random Dockerfile-ish text; `fuzz/` has the cargo-fuzz target).
    #[test]
    fn never_panics_on_random_input() {
        const TOKENS: &[&str] = &[
            "FROM ",
            "RUN ",
            "COPY ",
            "ADD ",
            "ENV ",
            "ARG ",
            "LABEL ",
            "HEALTHCHECK ",
            "ONBUILD ",
            "SHELL ",
            "CMD ",
            "EXPOSE ",
            "VOLUME ",
            "WORKDIR ",
            "x",
            "=",
            "\"",
            "'",
            "\\",
            "`",
            "$",
            "${",
            "}",
            ":-",
            ":+",
            "[",
            "]",
            "\n",
            " ",
            "\t",
            "#",
            "# escape=`\n",
            "<<",
            "<<-",
            "EOF",
            "--from=",
            "--chmod=",
            "--interval=",
            "é",
            "CMD",
            "NONE",
            "--",
            "\r\n",
            "[\"a\"]",
        ];
        let lex = Lexer::new('\\');
        let env = |k: &str| (k == "A").then(|| "v".to_owned());
        for _ in 0..20_000 {
            let n = rand::random::<u32>() % 24;
            let text: String = (0..n).map(|_| TOKENS[rand::random::<u32>() as usize % TOKENS.len()]).collect();
            let _ = parse(&text);
            let _ = lex.words(&text, &env);
            let _ = lex.expand_vars(&text, &env);
        }
    }

    #[test]
    fn key_values() {
        let kv = parse_key_values("A=1 B=\"x y\" C=z\\ w", '\\', Cmd::Env).expect("kv");
        assert_eq!(kv, vec![("A".into(), "1".into()), ("B".into(), "\"x y\"".into()), ("C".into(), "z\\ w".into())]);
        let kv = parse_key_values("KEY some value", '\\', Cmd::Env).expect("old");
        assert_eq!(kv, vec![("KEY".into(), "some value".into())]);
    }
}
