//! Output as docker prints it: tables, durations, sizes, and a small Go-template subset.

use serde_json::Value;

/// Columns padded like Go's tabwriter with padding 3.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            s.push_str(c);
            if i + 1 < n {
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

pub use api::units::human_duration;

pub fn ago(unix: i64) -> String {
    format!("{} ago", human_duration(chrono::Utc::now().timestamp() - unix))
}

/// Docker's `units.HumanSizeWithPrecision(size, 3)`: decimal units.
pub fn human_size(bytes: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes.max(0) as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = if i == 0 { format!("{}", v as i64) } else { format!("{:.*}", digits, v) };
    let trimmed = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s };
    format!("{trimmed}{}", units[i])
}

pub fn short_id(id: &str) -> String {
    id.strip_prefix("sha256:").unwrap_or(id).chars().take(12).collect()
}

/// Shortens to `n` characters with an ellipsis, as docker's `ps` does.
pub fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_owned() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}

fn render_value(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(render_value).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            format!("map[{}]", o.iter().map(|(k, v)| format!("{k}:{}", render_value(v))).collect::<Vec<_>>().join(" "))
        }
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = v;
    for part in path.trim_start_matches('.').split('.').filter(|p| !p.is_empty()) {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Prints `tpl` rendered for each value, a line each (docker's `--format`); a template error
/// is printed and gives exit code 1, else 0.
pub fn print_each<'a>(tpl: &str, values: impl IntoIterator<Item = &'a Value>) -> i32 {
    for v in values {
        match template(tpl, v) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    }
    0
}

/// Evaluates the subset of Go templates people use with `--format`/`-f`: `{{.A.B}}`,
/// `{{json .A}}`, `{{index .A "k"}}`, `{{upper .A}}`, `{{lower .A}}`, `{{.}}`.
pub fn template(tpl: &str, v: &Value) -> Result<String, String> {
    let tpl = tpl.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = tpl.as_str();
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find("}}").ok_or_else(|| format!("template: unclosed action in `{tpl}`"))?;
        let action = after[..j].trim().trim_start_matches('-').trim_end_matches('-').trim();
        let words: Vec<&str> = action.split_whitespace().collect();
        let val = |p: &str| lookup(v, p).cloned().unwrap_or(Value::Null);
        let s = match words.as_slice() {
            ["json", p] => serde_json::to_string(&val(p)).map_err(|e| e.to_string())?,
            ["upper", p] => render_value(&val(p)).to_uppercase(),
            ["lower", p] => render_value(&val(p)).to_lowercase(),
            ["index", p, k] => render_value(val(p).get(k.trim_matches('"')).unwrap_or(&Value::Null)),
            [p] if p.starts_with('.') => render_value(&val(p)),
            _ => return Err(format!("template: unsupported action `{{{{{action}}}}}`")),
        };
        out.push_str(&s);
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_and_durations_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_duration(5), "5 seconds");
        assert_eq!(human_duration(90), "About a minute");
    }

    #[test]
    fn templates() {
        let v = json!({"State": {"ExitCode": 3, "Running": false}, "Name": "/x", "Config": {"Labels": {"a": "b"}}});
        assert_eq!(template("{{.State.ExitCode}}", &v).expect("ok"), "3");
        assert_eq!(template("{{.Name}} {{.State.Running}}", &v).expect("ok"), "/x false");
        assert_eq!(template("{{json .Config.Labels}}", &v).expect("ok"), r#"{"a":"b"}"#);
        assert_eq!(template("{{index .Config.Labels \"a\"}}", &v).expect("ok"), "b");
        assert!(template("{{range .X}}", &v).is_err());
    }

    #[test]
    fn tables_pad_like_tabwriter() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A     BB\nxxx   y\n");
    }
}
