// SPDX-License-Identifier: GPL-2.0
//! The crate root of `mm/folio_migrate/` as each prefix of the series sees
//! it.
//!
//! The repository keeps one crate root with every module of the series.
//! A prefix of the series has added only some of the module sources, so
//! the tree gets the crate root without the `mod` items (and the
//! attributes and doc comments right above them) whose source is not
//! there yet. Every prefix then declares exactly the modules it has.

use std::path::Path;

/// The crate root in the repository.
pub const CRATE_ROOT: &str = "mm/kernel/folio_migrate.rs";

/// The module a `mod` line declares and where its source lives, relative
/// to the crate root's folder: the `#[path]` if one is given, else
/// `NAME.rs` or `NAME/mod.rs`.
fn module_sources(line: &str, path_attr: Option<&str>) -> Option<Vec<String>> {
    let rest = line.trim().strip_prefix("pub ").unwrap_or(line.trim());
    let name = rest.strip_prefix("mod ")?.strip_suffix(';')?.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some(match path_attr {
        Some(p) => vec![p.to_string()],
        None => vec![format!("{name}.rs"), format!("{name}/mod.rs")],
    })
}

/// The value of a `#[path = "..."]` attribute line.
fn path_attr(line: &str) -> Option<&str> {
    let inner = line.trim().strip_prefix("#[path")?.trim_start();
    let inner = inner.strip_prefix('=')?.trim();
    inner.strip_prefix('"')?.strip_suffix("\"]")
}

/// `text` without the module items whose source `exists` says is absent.
pub fn for_prefix(text: &str, exists: impl Fn(&str) -> bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    // Attribute and doc lines that belong to the next item.
    let mut pending: Vec<&str> = Vec::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[") || (t.starts_with("///") && !t.starts_with("////")) {
            pending.push(line);
            continue;
        }
        let path = pending.iter().find_map(|l| path_attr(l));
        match module_sources(line, path) {
            Some(sources) if !sources.iter().any(|s| exists(s)) => {}
            _ => {
                out.append(&mut pending);
                out.push(line);
            }
        }
        pending.clear();
    }
    out.append(&mut pending);
    // Dropped items leave blank lines behind: keep one between items.
    let mut text = String::new();
    let mut blank = false;
    for line in out {
        if line.trim().is_empty() {
            blank = true;
            continue;
        }
        if blank && !text.is_empty() {
            text.push('\n');
        }
        blank = false;
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// Writes the crate root for the modules present in the tree's folder
/// `dir` (where the crate root goes).
pub fn render(repo: &Path, dir: &Path) -> crate::util::Result<()> {
    let text = std::fs::read_to_string(repo.join(CRATE_ROOT))?;
    let out = for_prefix(&text, |rel| dir.join(rel).exists());
    crate::util::write_if_changed(&dir.join("folio_migrate.rs"), out.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "//! Doc.\n\n#[path = \"core/lib.rs\"]\npub mod migrate_core;\n\n\
                        pub mod folio;\npub mod engine;\n\n/// The fault path.\npub mod fault;\n\n\
                        #[cfg(CONFIG_KUNIT = \"y\")]\n#[path = \"kunit/a_kunit.rs\"]\nmod a_kunit;\n";

    #[test]
    fn keeps_what_exists_and_drops_the_rest() {
        let have = ["core/lib.rs", "folio.rs", "kunit/a_kunit.rs"];
        let out = for_prefix(ROOT, |p| have.contains(&p));
        assert_eq!(
            out,
            "//! Doc.\n\n#[path = \"core/lib.rs\"]\npub mod migrate_core;\n\npub mod folio;\n\n\
             #[cfg(CONFIG_KUNIT = \"y\")]\n#[path = \"kunit/a_kunit.rs\"]\nmod a_kunit;\n"
        );
    }

    #[test]
    fn a_folder_module_counts_by_its_mod_rs() {
        let have = ["core/lib.rs", "folio.rs", "engine/mod.rs"];
        let out = for_prefix(ROOT, |p| have.contains(&p));
        assert!(out.contains("pub mod engine;\n"));
        assert!(!out.contains("fault"));
        assert!(!out.contains("The fault path"));
        assert!(!out.contains("a_kunit"));
    }

    #[test]
    fn everything_present_is_the_text_itself() {
        assert_eq!(for_prefix(ROOT, |_| true), ROOT);
    }

    #[test]
    fn reads_path_attributes() {
        assert_eq!(path_attr("#[path = \"kunit/x.rs\"]"), Some("kunit/x.rs"));
        assert_eq!(path_attr("#[cfg(x)]"), None);
        assert_eq!(
            module_sources("pub mod engine;", None),
            Some(vec!["engine.rs".into(), "engine/mod.rs".into()])
        );
        assert_eq!(module_sources("use kernel::bindings;", None), None);
    }
}
