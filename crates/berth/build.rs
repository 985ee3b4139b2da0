//! Links `berth` with packed relative relocations (`DT_RELR`) where the toolchain and C
//! library support them.
//!
//! Every start of the binary (each CLI command, each exec'd shim) has the dynamic loader
//! apply its relative relocations before `main`: some 46,000 of them, a 1.1 MB `.rela.dyn`
//! table read through at 24 bytes an entry. Packed, the table is 13 KB, and the CLI starts
//! ~0.4 ms sooner. The executable stays position-independent.
//!
//! `ld -z pack-relative-relocs` needs binutils 2.38, and its output needs glibc 2.36 (the
//! loader refuses it otherwise, naming `GLIBC_ABI_DT_RELR`). So the flag is tried first on a
//! small C program with the same linker, which must link and run; where either fails (an
//! older system, a cross build) berth links as before. `BERTH_NO_RELR=1` turns it off.

use std::path::PathBuf;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BERTH_NO_RELR");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if std::env::var_os("BERTH_NO_RELR").is_some() || target != host || !target.contains("linux-gnu") {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return };
    // Rust links through `cc` on these targets unless told otherwise.
    let linker = std::env::var(format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace('-', "_")))
        .unwrap_or_else(|_| "cc".into());
    let src = out.join("relr-probe.c");
    let exe = out.join("relr-probe");
    // A pointer in initialized data: the probe has a relative relocation to pack.
    if std::fs::write(&src, "static const char *p = \"relr\";\nint main(void) { return p[0] != 'r'; }\n").is_err() {
        return;
    }
    let linked = Command::new(&linker)
        .args(["-pie", "-fPIE", "-O1", FLAG, "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .is_ok_and(|o| o.status.success());
    if linked && Command::new(&exe).status().is_ok_and(|s| s.success()) {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}
