//! `.dockerignore`: which context paths the build does not see.
//!
//! As Docker's pattern matcher: one pattern a line, `#` comments, paths cleaned and made
//! relative, `*` and `?` within a path component, `[…]` classes, `**` any number of
//! components, `!` re-includes. The last pattern that matches decides; a pattern matching a
//! directory excludes everything below it too.

#[derive(Debug, Clone)]
struct Pattern {
    parts: Vec<String>,
    exclusion: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// Cleans a path as Go's filepath.Clean does for relative paths (`./a//b/../c` → `a/c`).
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            x => out.push(x),
        }
    }
    out.join("/")
}

impl Ignore {
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (exclusion, l) = match l.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, l),
            };
            let c = clean(l);
            if c.is_empty() {
                continue;
            }
            patterns.push(Pattern { parts: c.split('/').map(str::to_owned).collect(), exclusion });
        }
        Ignore { patterns }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the relative path `rel` is excluded from the context.
    pub fn excluded(&self, rel: &str) -> bool {
        let rel = clean(rel);
        if rel.is_empty() {
            return false;
        }
        let comps: Vec<&str> = rel.split('/').collect();
        let mut excluded = false;
        for p in &self.patterns {
            if p.exclusion == excluded {
                // Only a pattern that could flip the answer needs checking.
                let hit = (1..=comps.len()).any(|n| match_parts(&p.parts, &comps[..n]));
                if hit {
                    excluded = !p.exclusion;
                }
            }
        }
        excluded
    }

    /// Whether some `!` pattern could re-include something below the excluded directory
    /// `rel` (so its walk must go on).
    pub fn may_reinclude_below(&self, rel: &str) -> bool {
        let rel = clean(rel);
        let comps: Vec<&str> = rel.split('/').collect();
        self.patterns.iter().filter(|p| p.exclusion).any(|p| {
            p.parts.iter().any(|x| x == "**")
                || (p.parts.len() > comps.len() && match_parts(&p.parts[..comps.len()], &comps))
        })
    }
}

fn match_parts(pat: &[String], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => (0..=path.len()).any(|skip| match_parts(&pat[1..], &path[skip..])),
        Some(p) => !path.is_empty() && glob(p.as_bytes(), path[0].as_bytes()) && match_parts(&pat[1..], &path[1..]),
    }
}

/// Matches one path component against a pattern with `*`, `?`, `[…]` and `\` escapes.
pub fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(1), Some(b'^') | Some(b'!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < p.len() && (p[i] != b']' || first) {
                first = false;
                let lo = p[i];
                if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|x| *x != b']') {
                    let hi = p[i + 2];
                    if lo <= c && c <= hi {
                        matched = true;
                    }
                    i += 3;
                } else {
                    if lo == c {
                        matched = true;
                    }
                    i += 1;
                }
            }
            if i >= p.len() {
                return false;
            }
            matched != negate && glob(&p[i + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => !s.is_empty() && s[0] == p[1] && glob(&p[2..], &s[1..]),
        Some(&c) => !s.is_empty() && s[0] == c && glob(&p[1..], &s[1..]),
    }
}

/// Whether a path contains glob characters.
pub fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_semantics() {
        let i = Ignore::parse("# comment\n*.log\n!keep.log\nbuild/\n**/tmp\ndocs/**/*.md\n/abs\n");
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("keep.log"));
        assert!(!i.excluded("sub/a.log"), "* does not cross /");
        assert!(i.excluded("build"));
        assert!(i.excluded("build/x/y"), "below an excluded directory");
        assert!(i.excluded("tmp"));
        assert!(i.excluded("a/b/tmp/c"));
        assert!(i.excluded("docs/a/b/x.md"));
        assert!(i.excluded("docs/x.md"));
        assert!(!i.excluded("docs/x.txt"));
        assert!(i.excluded("abs"));
        assert!(!i.excluded("src/main.rs"));
        let i = Ignore::parse("*\n!src\n");
        assert!(i.excluded("Dockerfile"));
        assert!(!i.excluded("src/a"));
        let i = Ignore::parse("*\n!src/keep\n");
        assert!(i.excluded("src"));
        assert!(!i.excluded("src/keep"));
        assert!(i.may_reinclude_below("src"));
        assert!(!i.may_reinclude_below("other"));
    }

    #[test]
    fn globs() {
        assert!(glob(b"a?c", b"abc"));
        assert!(glob(b"[a-c]x", b"bx"));
        assert!(!glob(b"[^a-c]x", b"bx"));
        assert!(glob(b"*.txt", b".txt"));
        assert!(glob(b"\\*", b"*"));
        assert_eq!(clean("./a//b/../c/"), "a/c");
    }
}
