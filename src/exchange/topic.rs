//! Topic bindings as a trie of words, with RabbitMQ's `*` (one word) and `#` (zero or more).
//! Matching walks only the branches a key can reach, so cost does not grow with bindings that
//! cannot match.

use std::collections::HashMap;

#[derive(Debug)]
pub struct TopicTrie<T> {
    root: Node<T>,
}

#[derive(Debug)]
struct Node<T> {
    children: HashMap<String, Node<T>>,
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            values: Vec::new(),
        }
    }
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
        }
    }
}

/// RabbitMQ splits on '.', and the empty key has no words at all.
fn words(key: &str) -> Vec<&str> {
    if key.is_empty() {
        Vec::new()
    } else {
        key.split('.').collect()
    }
}

impl<T> TopicTrie<T> {
    pub fn insert(&mut self, pattern: &str, value: T) {
        let mut node = &mut self.root;
        for w in words(pattern) {
            node = node.children.entry(w.to_string()).or_default();
        }
        node.values.push(value);
    }

    /// Remove values under `pattern` for which `pred` holds; prunes empty branches.
    pub fn remove(&mut self, pattern: &str, pred: impl FnMut(&T) -> bool) -> usize {
        fn go<T>(node: &mut Node<T>, ws: &[&str], pred: &mut dyn FnMut(&T) -> bool) -> usize {
            match ws.split_first() {
                None => {
                    let before = node.values.len();
                    node.values.retain(|v| !pred(v));
                    before - node.values.len()
                }
                Some((w, rest)) => {
                    let Some(child) = node.children.get_mut(*w) else {
                        return 0;
                    };
                    let n = go(child, rest, pred);
                    if child.values.is_empty() && child.children.is_empty() {
                        node.children.remove(*w);
                    }
                    n
                }
            }
        }
        let mut pred = pred;
        go(&mut self.root, &words(pattern), &mut pred)
    }

    /// Values stored under exactly this pattern (no wildcard expansion).
    pub fn matches_exact(&self, pattern: &str, f: &mut dyn FnMut(&T)) {
        let mut node = &self.root;
        for w in words(pattern) {
            match node.children.get(w) {
                Some(n) => node = n,
                None => return,
            }
        }
        node.values.iter().for_each(f);
    }

    /// Every stored value.
    pub fn for_each(&self, f: &mut dyn FnMut(&T)) {
        fn go<T>(node: &Node<T>, f: &mut dyn FnMut(&T)) {
            node.values.iter().for_each(&mut *f);
            node.children.values().for_each(|c| go(c, f));
        }
        go(&self.root, f);
    }

    /// Call `f` for every value whose pattern matches `key` (a value may be seen more than once
    /// when several `#` paths reach it; callers dedupe destinations anyway).
    ///
    /// Bounded time: without `#` each node is reached at most once (its depth fixes the word
    /// it looks at). A `#` can reach the same node at many word positions, and chains of `#`
    /// would revisit them exponentially often (`#.#.#.#.x`), so from the first `#` on every
    /// (node, position) pair is walked once: at most nodes x (words + 1) steps.
    pub fn matches<'a>(&'a self, key: &str, f: &mut dyn FnMut(&'a T)) {
        struct Walk<'a, 'k, 'f, T> {
            ws: Vec<&'k str>,
            seen: Option<std::collections::HashSet<(*const Node<T>, usize)>>,
            f: &'f mut dyn FnMut(&'a T),
        }
        fn go<'a, T>(node: &'a Node<T>, i: usize, w: &mut Walk<'a, '_, '_, T>) {
            if let Some(seen) = w.seen.as_mut() {
                if !seen.insert((node as *const Node<T>, i)) {
                    return;
                }
            }
            match w.ws.get(i) {
                None => node.values.iter().for_each(&mut *w.f),
                Some(word) => {
                    if let Some(child) = node.children.get(*word) {
                        go(child, i + 1, w);
                    }
                    if let Some(child) = node.children.get("*") {
                        go(child, i + 1, w);
                    }
                }
            }
            if let Some(child) = node.children.get("#") {
                w.seen.get_or_insert_with(Default::default);
                for j in i..=w.ws.len() {
                    go(child, j, w);
                }
            }
        }
        let ws = words(key);
        go(&self.root, 0, &mut Walk { ws, seen: None, f });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(patterns: &[&str], key: &str) -> Vec<usize> {
        let mut t = TopicTrie::default();
        for (i, p) in patterns.iter().enumerate() {
            t.insert(p, i);
        }
        let mut out = Vec::new();
        t.matches(key, &mut |v| out.push(*v));
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn rabbitmq_topic_semantics() {
        let p = [
            "a.b.c", "a.*.c", "a.#", "#", "*", "a.*", "#.c", "a.#.c", "", "*.*.*", "a.b.#.#",
        ];
        assert_eq!(matching(&p, "a.b.c"), vec![0, 1, 2, 3, 6, 7, 9, 10]);
        assert_eq!(matching(&p, "a"), vec![2, 3, 4]);
        assert_eq!(matching(&p, ""), vec![3, 8]);
        assert_eq!(matching(&p, "a.c"), vec![2, 3, 5, 6, 7]);
        assert_eq!(matching(&p, "a.b"), vec![2, 3, 5, 10]);
        assert_eq!(matching(&p, "x.y.z.c"), vec![3, 6]);
    }

    #[test]
    fn chains_of_hash_match_in_polynomial_time() {
        let pattern = vec!["#"; 40].join(".") + ".x";
        let key = vec!["w"; 100].join(".") + ".x";
        let t0 = std::time::Instant::now();
        assert_eq!(matching(&[pattern.as_str()], &key), vec![0]);
        assert_eq!(
            matching(&[pattern.as_str()], &vec!["w"; 127].join(".")),
            Vec::<usize>::new()
        );
        // Exponential matching takes longer than the universe; polynomial, milliseconds.
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t0.elapsed()
        );
    }

    #[test]
    fn remove_prunes() {
        let mut t = TopicTrie::default();
        t.insert("a.b", 1);
        t.insert("a.b", 2);
        assert_eq!(t.remove("a.b", |v| *v == 1), 1);
        let mut out = Vec::new();
        t.matches("a.b", &mut |v| out.push(*v));
        assert_eq!(out, vec![2]);
        assert_eq!(t.remove("a.b", |_| true), 1);
        assert!(t.root.children.is_empty());
    }
}
