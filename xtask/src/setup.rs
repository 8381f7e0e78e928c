// SPDX-License-Identifier: GPL-2.0
//! `cargo xtask setup`: install the pinned toolchain (DESIGN.md section 8).
//!
//! Every step checks first and installs only what is missing, so it is
//! cheap to call before each command.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bail;
use crate::util::{output, run, succeeds, Context, Result};

/// Debian packages the kernel build, the initramfs, the VM and the bench
/// plot need.
const PACKAGES: &[&str] = &[
    "clang-22",
    "lld-22",
    "llvm-22",
    "libclang-22-dev",
    "flex",
    "bison",
    "bc",
    "libelf-dev",
    "libssl-dev",
    "cpio",
    "rsync",
    "busybox-static",
    "xz-utils",
    "make",
    "gcc",
    "libc6-dev",
    "python3",
    "gnuplot-nox",
];

/// QEMU comes from the host release's backports: the machine's qemu-utils
/// may already be the backports version, which the base release's
/// qemu-system-x86 conflicts with.
const QEMU_PACKAGE: &str = "qemu-system-x86";

/// 0.71.1 with libclang 22 emits opaque structs (rust-bindgen PR 3278):
/// `make rustavailable` warns and the bindings lose their fields.
const BINDGEN_VERSION: &str = "0.72.1";
const SOURCES_FILE: &str = "/etc/apt/sources.list.d/folio-migrate-backports.sources";

/// The suite that carries linux-source-7.3.
pub const KERNEL_SUITE: &str = "trixie-backports";

pub fn setup() -> Result<()> {
    let codename = host_codename()?;
    let sources_changed = ensure_apt_sources(&codename)?;
    let missing = missing_packages(PACKAGES)?;
    let qemu_missing = missing_packages(&[QEMU_PACKAGE])?;
    if sources_changed || !missing.is_empty() || !qemu_missing.is_empty() {
        eprintln!("    apt-get update");
        run(apt().arg("update").arg("-q"))?;
    }
    if !missing.is_empty() {
        eprintln!("    installing {}", missing.join(" "));
        run(apt()
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing))?;
    }
    if !qemu_missing.is_empty() {
        eprintln!("    installing {QEMU_PACKAGE} from {codename}-backports");
        run(apt()
            .args(["install", "-y", "-q", "--no-install-recommends", "-t"])
            .arg(format!("{codename}-backports"))
            .arg(QEMU_PACKAGE))?;
    }
    ensure_bindgen()?;
    ensure_rust_src()?;
    Ok(())
}

fn apt() -> Command {
    let mut c = Command::new("apt-get");
    c.env("DEBIAN_FRONTEND", "noninteractive");
    c
}

fn host_codename() -> Result<String> {
    let text = std::fs::read_to_string("/etc/os-release")
        .context(|| "cannot read /etc/os-release".into())?;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("VERSION_CODENAME=") {
            return Ok(v.trim_matches('"').to_string());
        }
    }
    bail!("/etc/os-release names no VERSION_CODENAME: is this Debian?")
}

/// Adds the kernel suite and the host's backports, with the URI of the
/// Debian archive the machine is already configured with.
fn ensure_apt_sources(codename: &str) -> Result<bool> {
    let uri = debian_archive_uri(codename)?;
    let text = format!(
        "# Added by `cargo xtask setup` (folio-migrate): the Debian kernel source\n\
         # and the host's backports, from the archive already configured here.\n\
         Types: deb\nURIs: {uri}\nSuites: {KERNEL_SUITE} {codename}-backports\n\
         Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    if std::fs::read_to_string(SOURCES_FILE).ok().as_deref() == Some(text.as_str()) {
        return Ok(false);
    }
    eprintln!("    adding {KERNEL_SUITE} and {codename}-backports from {uri}");
    std::fs::write(SOURCES_FILE, text)
        .context(|| format!("cannot write {SOURCES_FILE} (run as root)"))?;
    Ok(true)
}

/// Finds the URI of the Debian archive that serves the host's release,
/// in deb822 `.sources` files or one-line `.list` files.
fn debian_archive_uri(codename: &str) -> Result<String> {
    let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        v.sort();
        files.extend(v);
    }
    for f in files {
        if f == Path::new(SOURCES_FILE) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if let Some(uri) = find_archive_uri(&text, codename) {
            return Ok(uri);
        }
    }
    bail!("no apt source serves Debian `{codename}` main; cannot add {KERNEL_SUITE}")
}

/// Parses one apt source file, returning the URI of an entry that has the
/// suite `codename` and the `main` component.
pub fn find_archive_uri(text: &str, codename: &str) -> Option<String> {
    // One-line format: deb [opts] URI SUITE COMPONENTS...
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("deb ") {
            let mut words = rest.split_whitespace().peekable();
            if words.peek().is_some_and(|w| w.starts_with('[')) {
                for w in words.by_ref() {
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            let uri = words.next()?;
            let suite = words.next()?;
            if suite == codename && words.any(|c| c == "main") {
                return Some(uri.to_string());
            }
        }
    }
    // deb822: stanzas separated by blank lines.
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let (Some(uris), Some(suites), Some(comps)) =
            (field("URIs"), field("Suites"), field("Components"))
        else {
            continue;
        };
        if suites.split_whitespace().any(|s| s == codename)
            && comps.split_whitespace().any(|c| c == "main")
        {
            return uris.split_whitespace().next().map(str::to_string);
        }
    }
    None
}

fn missing_packages(pkgs: &[&str]) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for p in pkgs {
        let status = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", p])
            .output()
            .context(|| "cannot run dpkg-query".into())?;
        if !String::from_utf8_lossy(&status.stdout).contains("install ok installed") {
            missing.push(p.to_string());
        }
    }
    Ok(missing)
}

fn cargo_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        });
    home.join("bin")
}

fn ensure_bindgen() -> Result<()> {
    let have =
        output(Command::new(cargo_bin().join("bindgen")).arg("--version")).unwrap_or_default();
    if have.split_whitespace().nth(1) == Some(BINDGEN_VERSION) {
        return Ok(());
    }
    eprintln!("    cargo install bindgen-cli {BINDGEN_VERSION} (a few minutes)");
    run(Command::new("cargo").args([
        "install",
        "--locked",
        "bindgen-cli",
        "--version",
        BINDGEN_VERSION,
    ]))
}

/// The kernel builds `core` from the toolchain's own rust-src, which must
/// match rustc exactly: rustup's component first, Debian's as fallback.
fn ensure_rust_src() -> Result<()> {
    if rust_lib_src().is_some() {
        return Ok(());
    }
    eprintln!("    rustup component add rust-src");
    if !succeeds(Command::new("rustup").args(["component", "add", "rust-src"])) {
        eprintln!("    rustup could not add rust-src; trying Debian's rust-src");
        run(apt().args(["install", "-y", "-q", "rust-src"]))?;
    }
    if rust_lib_src().is_none() {
        bail!("no rust-src matching `rustc` found after installing it");
    }
    Ok(())
}

/// The Rust standard library sources for `RUST_LIB_SRC`.
pub fn rust_lib_src() -> Option<PathBuf> {
    let sysroot = output(Command::new("rustc").args(["--print", "sysroot"])).ok()?;
    let lib = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library");
    if lib.join("core/src/lib.rs").exists() {
        return Some(lib);
    }
    // Debian's rust-src: /usr/src/rustc-VERSION/library, if it matches rustc.
    let version = output(Command::new("rustc").arg("--version")).ok()?;
    let v = version.split_whitespace().nth(1)?;
    let lib = PathBuf::from(format!("/usr/src/rustc-{v}/library"));
    lib.join("core/src/lib.rs").exists().then_some(lib)
}

#[cfg(test)]
mod tests {
    use super::find_archive_uri;

    #[test]
    fn finds_uri_in_deb822() {
        let text =
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                    Components: main\n\nTypes: deb\nURIs: http://sec.example/debian-security\n\
                    Suites: bookworm-security\nComponents: main\n";
        assert_eq!(
            find_archive_uri(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(find_archive_uri(text, "trixie"), None);
    }

    #[test]
    fn finds_uri_in_one_line_format() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n";
        assert_eq!(
            find_archive_uri(text, "bookworm").as_deref(),
            Some("http://m.example/debian")
        );
        let other = "deb https://packages.example/apt cloud-sdk-bookworm main\n";
        assert_eq!(find_archive_uri(other, "bookworm"), None);
    }
}
