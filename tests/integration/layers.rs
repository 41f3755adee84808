//! The library's modules depend on each other without cycles (ARCHITECTURE.md's layers): this
//! reads every `crate::module` (and, inside `mgmt`, `super::module`) a module's code names,
//! outside its tests, and fails with the cycle if one appears.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The node a source file belongs to: its top-level module, or `mgmt::x` inside mgmt.
fn node_of(rel: &Path) -> Option<String> {
    let parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [bin, ..] if bin == "bin" => None,
        [lib] if lib == "lib" => None,
        [m, sub, ..] if m == "mgmt" && sub != "mod" => Some(format!("mgmt::{sub}")),
        [m, ..] => Some(m.clone()),
        [] => None,
    }
}

/// What `code` refers to through `prefix::name`.
fn names_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    code.match_indices(prefix)
        .filter_map(|(i, _)| {
            let rest = &code[i + prefix.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (end > 0).then(|| &rest[..end])
        })
        .collect()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).expect("under src");
            let Some(node) = node_of(rel) else { continue };
            let text = std::fs::read_to_string(&path).expect("read");
            // Tests may reach anywhere; declarations of submodules are not dependencies.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let top = node.split("::").next().unwrap_or("").to_string();
            let deps = g.entry(node.clone()).or_default();
            for name in names_after(code, "crate::") {
                if name == "mgmt" {
                    continue;
                }
                if name != top {
                    deps.insert(name.to_string());
                }
            }
            if top == "mgmt" {
                let mut names = names_after(code, "crate::mgmt::");
                names.extend(names_after(code, "super::"));
                for name in names {
                    let dep = format!("mgmt::{name}");
                    if dep != node && !name.chars().next().is_some_and(|c| c.is_uppercase()) {
                        deps.insert(dep);
                    }
                }
            }
        }
    }
    g
}

/// A cycle through the graph, if there is one.
fn find_cycle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[from..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            // Only modules the graph knows (functions of mgmt's mod.rs are not nodes).
            if g.contains_key(d) {
                if let Some(c) = visit(d, g, state, path) {
                    return Some(c);
                }
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if let Some(c) = visit(n, g, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn modules_depend_on_each_other_without_cycles() {
    let g = graph();
    assert!(
        g.contains_key("connection") && g.contains_key("mgmt::api"),
        "{g:?}"
    );
    if let Some(cycle) = find_cycle(&g) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_check_finds_a_cycle() {
    let mut g = graph();
    g.entry("store".into()).or_default().insert("queue".into());
    assert!(
        find_cycle(&g).is_some(),
        "a planted store -> queue edge closes a cycle"
    );
}
