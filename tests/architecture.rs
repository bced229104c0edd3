//! The shape of the code base, checked: the module graphs of the library,
//! the CLI and the Python bindings run one way (no import circle), and the
//! shells decide nothing by the name of a mode, method or side (the
//! library parses every name; issue "one vocabulary and one data path").
//!
//! Reads the sources as text: a module `a` depends on `b` when code in `a`
//! (outside comments and its `#[cfg(test)] mod tests`) names `crate::b`
//! (or, in the CLI, `crate::cli::b` / `super::b`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file: without comment lines and without its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Modules named after `prefix` in `text` (`crate::calibrate::...` →
/// `calibrate`); an item re-exported at the root (`crate::Calibrator`) is
/// resolved to its module through `root_items`.
fn names_after<'a>(
    text: &'a str,
    prefix: &'a str,
    root_items: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = String> + 'a {
    text.match_indices(prefix).filter_map(move |(i, _)| {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return None;
        }
        let rest = &text[i + prefix.len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if rest[name.len()..].starts_with("::") {
            Some(name)
        } else {
            root_items.get(&name).cloned()
        }
    })
}

/// What the crate root at `lib` re-exports: item name → its module
/// (`pub use calibrate::{Calibration, Calibrator};`).
fn root_items(lib: &Path) -> BTreeMap<String, String> {
    let text = code(lib);
    let mut items = BTreeMap::new();
    for stmt in text.split(';') {
        let Some(path) = stmt.trim().strip_prefix("pub use ") else { continue };
        let Some((module, rest)) = path.split_once("::") else { continue };
        for item in rest.trim_matches(|c: char| c == '{' || c == '}' || c.is_whitespace()).split(',') {
            let item = item.trim();
            if !item.is_empty() && !item.contains("::") {
                items.insert(item.to_owned(), module.trim().to_owned());
            }
        }
    }
    items
}

/// The graph of the top-level modules under `dir` (a file `dir/a.rs` or a
/// folder `dir/a/` is module `a`), skipping the entries in `skip`.
fn graph(dir: &Path, prefixes: &[&str], skip: &[&str]) -> Graph {
    let lib = dir.join("lib.rs");
    let items = if lib.exists() { root_items(&lib) } else { BTreeMap::new() };
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut g = Graph::new();
    for file in files {
        let rel = file.strip_prefix(dir).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_str().unwrap();
        let module = first.trim_end_matches(".rs").to_owned();
        if skip.contains(&module.as_str()) {
            continue;
        }
        let text = code(&file);
        let deps = g.entry(module.clone()).or_default();
        for prefix in prefixes {
            deps.extend(names_after(&text, prefix, &items).filter(|d| *d != module));
        }
    }
    g
}

/// A cycle of `g`, if it has one (depth-first search).
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        v: &str,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(v.to_owned(), 1);
        path.push(v.to_owned());
        for w in g.get(v).into_iter().flatten().filter(|w| g.contains_key(*w)) {
            match state.get(w).copied().unwrap_or(0) {
                1 => {
                    let start = path.iter().position(|p| p == w).unwrap();
                    let mut c = path[start..].to_vec();
                    c.push(w.clone());
                    return Some(c);
                }
                0 => {
                    if let Some(c) = visit(g, w, state, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        state.insert(v.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for v in g.keys() {
        if state.get(v).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(g, v, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g: Graph = [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
    assert_eq!(cycle(&g).unwrap().len(), 4);
    let mut acyclic = g.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(cycle(&acyclic), None);
    let text =
        "use crate::calibrate::{Calibrator};\nlet x = crate::Identity; my_crate::io::x(); crate::Spacing";
    let items = BTreeMap::from([("Identity".to_owned(), "transform".to_owned())]);
    assert_eq!(names_after(text, "crate::", &items).collect::<Vec<_>>(), vec!["calibrate", "transform"]);
    let lib = root_items(&root().join("src/lib.rs"));
    assert_eq!(lib["Calibrator"], "calibrate");
    assert_eq!(lib["Calibration"], "calibrate");
    assert_eq!(lib["Rank"], "quantile");
}

#[test]
fn the_library_modules_run_one_way() {
    let g = graph(&root().join("src"), &["crate::"], &["bin", "lib"]);
    assert!(g.contains_key("calibrate") && g["calibrate"].contains("quantile"), "{g:?}");
    assert_eq!(cycle(&g), None, "an import circle in the library");
}

#[test]
fn the_cli_modules_run_one_way() {
    let g = graph(&root().join("src/bin/confseg"), &["crate::cli::", "super::"], &["mod"]);
    assert!(g["predict"].contains("inputs"), "{g:?}");
    assert_eq!(cycle(&g), None, "an import circle in the CLI");
}

#[test]
fn the_python_bindings_run_one_way() {
    let dir = root().join("python/src");
    if !dir.exists() {
        return; // a packaged crate without the bindings
    }
    let g = graph(&dir, &["crate::"], &["lib"]);
    assert!(g["calibrate"].contains("layout"), "{g:?}");
    assert_eq!(cycle(&g), None, "an import circle in the Python bindings");
}

/// The names the library parses (modes, methods, sides, risks, bounds,
/// precisions): a shell that compares a user's string with one of them
/// decides by name what the library should.
const VOCABULARY: &[&str] = &[
    "marginal",
    "bonferroni",
    "max",
    "risk-control",
    "conformal",
    "pixelwise",
    "morphological-chessboard",
    "morphological-cityblock",
    "inner",
    "outer",
    "recall",
    "precision",
    "hoeffding",
    "bernstein",
    "wsr",
    "hoeffding-bentkus",
    "f32",
    "f64",
];

/// Lines of `text` that compare a string with a vocabulary name or match on one.
fn decisions_by_name(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("//") || l.starts_with('#') && !l.starts_with("#[") {
            continue;
        }
        for name in VOCABULARY {
            for quote in ['"', '\''] {
                let lit = format!("{quote}{name}{quote}");
                let decides =
                    [format!("== {lit}"), format!("!= {lit}"), format!("{lit} =>"), format!("{lit} |")]
                        .iter()
                        .any(|p| l.contains(p.as_str()))
                        || l.starts_with(&format!("case {lit}"))
                        || (l.contains(&format!(" in ({lit}")) || l.contains(&format!(" in [{lit}")));
                if decides {
                    found.push(line.to_owned());
                }
            }
        }
    }
    found
}

#[test]
fn the_shells_decide_nothing_by_name() {
    assert_eq!(decisions_by_name("if mode == \"max\" {"), vec!["if mode == \"max\" {"]);
    assert_eq!(decisions_by_name("    \"bonferroni\" => 2,").len(), 1);
    assert!(decisions_by_name("if kind in ('recall', 'precision'):").len() == 1);
    assert!(decisions_by_name("default_value = \"marginal\"").is_empty());
    let mut files = Vec::new();
    rust_files(&root().join("src/bin"), &mut files);
    for dir in ["python/src", "python/confseg"] {
        let dir = root().join(dir);
        if dir.exists() {
            rust_files(&dir, &mut files);
            files.extend(
                std::fs::read_dir(&dir)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|e| e == "py")),
            );
        }
    }
    let offending: Vec<String> = files
        .iter()
        .flat_map(|f| {
            let text = if f.extension().is_some_and(|e| e == "rs") {
                code(f)
            } else {
                std::fs::read_to_string(f).unwrap()
            };
            decisions_by_name(&text).into_iter().map(move |l| format!("{}: {}", f.display(), l.trim()))
        })
        .collect();
    assert!(offending.is_empty(), "shells deciding by name:\n{}", offending.join("\n"));
}
