//! Dockerfile word processing: variable substitution and quote removal, as the Dockerfile
//! reference describes for ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME and
//! WORKDIR (RUN, CMD and ENTRYPOINT are left to the shell).
//!
//! `$v`, `${v}`, `${v:-default}`, `${v-default}`, `${v:+alt}`, `${v+alt}`, `${v:?message}`;
//! single quotes are literal, double quotes allow substitution, the escape character (`\` or
//! the `escape` directive's) makes the next character literal (`\$`).

/// Looks a variable up.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub struct Lexer {
    pub escape: char,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Self { escape }
    }

    /// Processes `s` as one word: substitutes variables, removes quotes and escapes.
    pub fn word(&self, s: &str, env: Lookup<'_>) -> Result<String, String> {
        let chars: Vec<char> = s.chars().collect();
        let mut i = 0;
        let out = self.process(&chars, &mut i, env, None)?;
        Ok(out)
    }

    /// Splits `s` on unquoted white space, then processes each word.
    pub fn words(&self, s: &str, env: Lookup<'_>) -> Result<Vec<String>, String> {
        split_raw(s, self.escape)?.iter().map(|w| self.word(w, env)).collect()
    }

    /// Substitutes variables only, keeping quotes and other characters as they are (the
    /// content of an unquoted heredoc).
    pub fn expand_vars(&self, s: &str, env: Lookup<'_>) -> Result<String, String> {
        let c: Vec<char> = s.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < c.len() {
            if c[i] == self.escape && c.get(i + 1) == Some(&'$') {
                out.push('$');
                i += 2;
            } else if c[i] == '$' {
                out.push_str(&self.dollar(&c, &mut i, env)?);
            } else {
                out.push(c[i]);
                i += 1;
            }
        }
        Ok(out)
    }

    /// Processes until the end or (inside `${…}`) the closing brace.
    fn process(&self, c: &[char], i: &mut usize, env: Lookup<'_>, stop: Option<char>) -> Result<String, String> {
        let mut out = String::new();
        while *i < c.len() {
            let ch = c[*i];
            if Some(ch) == stop {
                return Ok(out);
            }
            if ch == self.escape {
                *i += 1;
                match c.get(*i) {
                    Some(&n) => {
                        out.push(n);
                        *i += 1;
                    }
                    None => out.push(ch),
                }
                continue;
            }
            match ch {
                '\'' => {
                    *i += 1;
                    loop {
                        match c.get(*i) {
                            None => {
                                return Err(
                                    "unexpected end of statement while looking for matching single-quote".into()
                                );
                            }
                            Some('\'') => {
                                *i += 1;
                                break;
                            }
                            Some(&x) => {
                                out.push(x);
                                *i += 1;
                            }
                        }
                    }
                }
                '"' => {
                    *i += 1;
                    loop {
                        match c.get(*i) {
                            None => {
                                return Err(
                                    "unexpected end of statement while looking for matching double-quote".into()
                                );
                            }
                            Some('"') => {
                                *i += 1;
                                break;
                            }
                            Some('$') => out.push_str(&self.dollar(c, i, env)?),
                            Some(&x) if x == self.escape => match c.get(*i + 1) {
                                Some(&n) if n == '"' || n == '$' || n == self.escape => {
                                    out.push(n);
                                    *i += 2;
                                }
                                _ => {
                                    out.push(x);
                                    *i += 1;
                                }
                            },
                            Some(&x) => {
                                out.push(x);
                                *i += 1;
                            }
                        }
                    }
                }
                '$' => out.push_str(&self.dollar(c, i, env)?),
                _ => {
                    out.push(ch);
                    *i += 1;
                }
            }
        }
        if stop.is_some() {
            return Err("missing '}' in variable substitution".into());
        }
        Ok(out)
    }

    /// At a `$`: the substitution.
    fn dollar(&self, c: &[char], i: &mut usize, env: Lookup<'_>) -> Result<String, String> {
        *i += 1;
        let is_name = |x: char| x.is_ascii_alphanumeric() || x == '_';
        match c.get(*i) {
            Some('{') => {
                *i += 1;
                let start = *i;
                while *i < c.len() && is_name(c[*i]) {
                    *i += 1;
                }
                let name: String = c[start..*i].iter().collect();
                if name.is_empty() {
                    return Err("bad substitution: missing variable name in ${}".into());
                }
                match c.get(*i) {
                    Some('}') => {
                        *i += 1;
                        Ok(env(&name).unwrap_or_default())
                    }
                    Some(':') | Some('-') | Some('+') | Some('?') => {
                        let colon = c[*i] == ':';
                        if colon {
                            *i += 1;
                        }
                        let op = *c.get(*i).ok_or("missing '}' in variable substitution")?;
                        if !matches!(op, '-' | '+' | '?') {
                            return Err(format!("unsupported modifier ({op}) in substitution"));
                        }
                        *i += 1;
                        let word = self.process(c, i, env, Some('}'))?;
                        *i += 1; // the brace
                        let val = env(&name);
                        let set = match &val {
                            Some(v) => !colon || !v.is_empty(),
                            None => false,
                        };
                        Ok(match op {
                            '-' => {
                                if set {
                                    val.unwrap_or_default()
                                } else {
                                    word
                                }
                            }
                            '+' => {
                                if set {
                                    word
                                } else {
                                    String::new()
                                }
                            }
                            _ => {
                                if set {
                                    val.unwrap_or_default()
                                } else if word.is_empty() {
                                    return Err(format!("{name}: is not allowed to be unset"));
                                } else {
                                    return Err(format!("{name}: {word}"));
                                }
                            }
                        })
                    }
                    Some(x) => Err(format!("bad substitution: unexpected `{x}` in ${{{name}…}}")),
                    None => Err("missing '}' in variable substitution".into()),
                }
            }
            Some(&x) if is_name(x) => {
                let start = *i;
                while *i < c.len() && is_name(c[*i]) {
                    *i += 1;
                }
                let name: String = c[start..*i].iter().collect();
                Ok(env(&name).unwrap_or_default())
            }
            _ => Ok("$".into()),
        }
    }
}

/// Splits on unquoted white space, keeping quotes and escapes in the words.
pub fn split_raw(s: &str, escape: char) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    let mut in_word = false;
    while let Some(ch) = chars.next() {
        if ch == escape && quote != Some('\'') {
            cur.push(ch);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            in_word = true;
            continue;
        }
        match quote {
            Some(q) => {
                cur.push(ch);
                if ch == q {
                    quote = None;
                }
            }
            None if ch.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                if ch == '"' || ch == '\'' {
                    quote = Some(ch);
                }
                cur.push(ch);
                in_word = true;
            }
        }
    }
    if let Some(q) = quote {
        let which = if q == '"' { "double" } else { "single" };
        return Err(format!("unexpected end of statement while looking for matching {which}-quote"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            "SP" => Some("x y".into()),
            _ => None,
        }
    }

    fn w(s: &str) -> String {
        Lexer::new('\\').word(s, &env).expect(s)
    }

    #[test]
    fn substitution_forms() {
        assert_eq!(w("$A"), "a");
        assert_eq!(w("${A}b"), "ab");
        assert_eq!(w("$Ab"), "");
        assert_eq!(w("${NOPE:-d}"), "d");
        assert_eq!(w("${EMPTY:-d}"), "d");
        assert_eq!(w("${EMPTY-d}"), "");
        assert_eq!(w("${A:-d}"), "a");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${NOPE:+alt}"), "");
        assert_eq!(w("${NOPE:-${A}x}"), "ax");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "a b");
        assert_eq!(w("\"\\$A\""), "$A");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(w("$"), "$");
        assert_eq!(w("cost: $5"), "cost: ");
        assert!(Lexer::new('\\').word("${NOPE:?must be set}", &env).expect_err("unset").contains("must be set"));
        assert!(Lexer::new('\\').word("\"open", &env).is_err());
        assert!(Lexer::new('\\').word("${A", &env).is_err());
    }

    #[test]
    fn splitting_and_backtick_escape() {
        let l = Lexer::new('\\');
        assert_eq!(l.words("a \"b c\" 'd e' f\\ g", &env).expect("words"), vec!["a", "b c", "d e", "f g"]);
        assert_eq!(l.words("  $SP  ", &env).expect("words"), vec!["x y"]);
        let bt = Lexer::new('`');
        assert_eq!(bt.word("C:\\dir `$A", &env).expect("word"), "C:\\dir $A");
        assert!(split_raw("a 'b", '\\').is_err());
        assert_eq!(l.expand_vars("'$A' \"x\" \\$A", &env).expect("vars"), "'a' \"x\" $A");
    }
}
