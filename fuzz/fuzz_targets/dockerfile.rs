//! The Dockerfile parser and word processor must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(df) = build::parser::parse(&text) {
        let lex = build::words::Lexer::new(df.escape);
        let env = |k: &str| (k == "A").then(|| "v".to_owned());
        for ins in &df.instructions {
            let _ = lex.words(&ins.text(), &env);
            let _ = build::parser::parse_key_values(&ins.text(), df.escape, ins.cmd);
        }
    }
    let _ = build::ignore::Ignore::parse(&text).excluded("a/b/c");
});
