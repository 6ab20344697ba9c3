//! The library's module graph has no cycle: data flows one way (attach → observe → model →
//! detect → snapshot → export, over binary → symbols/target → goruntime). Part of the lint
//! step of `cargo xtask test`: a `use crate::x` that points back up fails it.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::{bail, Result};

/// Top-level module → the top-level modules its files name through `crate::`.
fn graph(src: &Path) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src)?;
            let first = rel.components().next().unwrap().as_os_str();
            let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path)?;
            let code: String = text
                .lines()
                .map(|l| l.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            let deps = edges.entry(module.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                for root in roots(&code[i + "crate::".len()..]) {
                    if root != module && root.starts_with(|c: char| c.is_ascii_lowercase()) {
                        deps.insert(root);
                    }
                }
            }
        }
    }
    Ok(edges)
}

/// The module names right after `crate::`: one (`crate::model::...`) or, for a brace group
/// (`crate::{model, detect::Finding}`, over several lines too), each of its top-level names.
fn roots(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let mut out = Vec::new();
    let mut depth = 0;
    let mut at_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_start = true,
            c if c.is_whitespace() => {}
            _ if at_start && depth == 0 => {
                out.push(ident(&group[i..]));
                at_start = false;
            }
            _ => {}
        }
    }
    out
}

/// A cycle in `edges`, if there is one (depth-first search with colours).
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, bool>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => {
                let from = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut c: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                c.push(node.to_string());
                return Some(c);
            }
            Some(false) => return None,
            None => {}
        }
        state.insert(node, true);
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(node, false);
        None
    }
    let mut state = BTreeMap::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut state, &mut Vec::new()))
}

pub fn check(src: &Path) -> Result<()> {
    let edges = graph(src)?;
    if let Some(c) = cycle(&edges) {
        bail!(
            "module cycle in {}: {} (a lower layer must not use a higher one)",
            src.display(),
            c.join(" → ")
        );
    }
    eprintln!("+ module graph of {}: no cycle", src.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_roots_and_cycles() {
        assert_eq!(roots("model::Model;"), ["model"]);
        assert_eq!(
            roots("{\n    detect::{Finding, x},\n    model,\n    snapshot::Report,\n};"),
            ["detect", "model", "snapshot"]
        );
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("c".into());
        assert_eq!(cycle(&g), None);
        g.entry("c".into()).or_default().insert("a".into());
        assert_eq!(cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    }

    #[test]
    fn the_library_has_no_module_cycle() {
        check(&gotrace_tests::fixtures::workspace_root().join("tracer-user/src")).unwrap();
    }
}
