// SPDX-License-Identifier: GPL-2.0
//! The module index files of `mm/folio_migrate/` (the crate root and each
//! `mod.rs`) as each prefix of the series sees them.
//!
//! The repository keeps one crate root with every module of the series,
//! and one `mod.rs` per folder with every module of that folder. A prefix
//! of the series has added only some of the module sources, so the tree
//! gets each index file without the `mod` items (and the attributes and
//! doc comments right above them) whose source is not there yet. Every
//! prefix then declares exactly the modules it has, and a later patch
//! that adds a module to a folder does not have to edit its index.

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

/// The module a `module! {` block's `type:` line names first:
/// `vram_chardev` for `type: vram_chardev::VramModule,`.
fn module_type_root(line: &str) -> Option<&str> {
    let ty = line.trim().strip_prefix("type:")?.trim();
    ty.split_once("::").map(|(m, _)| m)
}

/// `text` without the module items whose source `exists` says is absent.
///
/// A `module! { ... }` block (up to a `}` line) goes with the
/// module its `type:` names. The crate's `__LOG_PREFIX`, which `module!`
/// defines when it is there, loses its attributes (its `cfg`) when no
/// `module!` block is left, so that exactly one is defined.
pub fn for_prefix(text: &str, exists: impl Fn(&str) -> bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    // Attribute and doc lines that belong to the next item.
    let mut pending: Vec<&str> = Vec::new();
    let mut dropped: Vec<&str> = Vec::new();
    let mut module_block: Option<Vec<&str>> = None;
    let mut kept_module = false;
    for line in text.lines() {
        if let Some(block) = module_block.as_mut() {
            block.push(line);
            if line == "}" {
                let block = module_block.take().unwrap_or_default();
                let root = block.iter().find_map(|l| module_type_root(l));
                if root.is_some_and(|r| dropped.contains(&r)) {
                    pending.clear();
                } else {
                    kept_module = true;
                    out.append(&mut pending);
                    out.extend(block);
                }
            }
            continue;
        }
        let t = line.trim_start();
        if t.starts_with("#[") || (t.starts_with("///") && !t.starts_with("////")) {
            pending.push(line);
            continue;
        }
        if line.ends_with("module! {") && !line.starts_with(char::is_whitespace) {
            module_block = Some(vec![line]);
            continue;
        }
        let path = pending.iter().find_map(|l| path_attr(l));
        match module_sources(line, path) {
            Some(sources) if !sources.iter().any(|s| exists(s)) => {
                if let Some(name) = line.trim().trim_start_matches("pub ").strip_prefix("mod ") {
                    dropped.push(name.trim_end_matches(';').trim());
                }
            }
            _ => {
                out.append(&mut pending);
                out.push(line);
            }
        }
        pending.clear();
    }
    if !kept_module {
        // `__LOG_PREFIX` is defined here alone: whatever `cfg` made room
        // for `module!` goes.
        if let Some(i) = out.iter().position(|l| l.starts_with("const __LOG_PREFIX")) {
            let mut start = i;
            while start > 0 && out[start - 1].trim_start().starts_with("#[") {
                start -= 1;
            }
            out.drain(start..i);
        }
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

/// Whether `path` (relative to the repository) is a module index file.
pub fn is_index(path: &str) -> bool {
    path == CRATE_ROOT || (path.starts_with("mm/kernel/") && path.ends_with("/mod.rs"))
}

/// The module index files of the repository.
pub fn index_files(repo: &Path) -> Vec<String> {
    let mut out = vec![CRATE_ROOT.to_string()];
    let mut dirs = vec![repo.join("mm/kernel")];
    while let Some(dir) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(rel) = path.strip_prefix(repo) {
                let rel = rel.to_string_lossy().into_owned();
                if is_index(&rel) && !out.contains(&rel) {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    out
}

/// Writes the index file `index` (relative to the repository) to `dst` in
/// the tree, keeping only the modules whose sources are in `dst`'s folder.
pub fn render(repo: &Path, index: &str, dst: &Path) -> crate::util::Result<()> {
    let text = std::fs::read_to_string(repo.join(index))?;
    let dir = dst.parent().unwrap_or(dst);
    let out = for_prefix(&text, |rel| dir.join(rel).exists());
    crate::util::write_if_changed(dst, out.as_bytes())?;
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
    fn a_module_block_goes_with_its_type_and_the_log_prefix_stays_alone() {
        let root = "#[cfg(not(X))]\nconst __LOG_PREFIX: &[u8] = b\"m\\0\";\n\n\
                    #[path = \"vram/chardev.rs\"]\nmod vram_chardev;\n\n\
                    #[cfg(X)]\nkernel::prelude::module! {\n    type: vram_chardev::VramModule,\n    \
                    name: \"m\",\n}\n";
        let all = for_prefix(root, |_| true);
        assert_eq!(all, root);
        let none = for_prefix(root, |_| false);
        assert_eq!(none, "const __LOG_PREFIX: &[u8] = b\"m\\0\";\n");
    }

    #[test]
    fn knows_the_index_files() {
        assert!(is_index(CRATE_ROOT));
        assert!(is_index("mm/kernel/engine/mod.rs"));
        assert!(!is_index("mm/kernel/engine/collect.rs"));
        assert!(!is_index("mm/core/src/mod.rs"));
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
