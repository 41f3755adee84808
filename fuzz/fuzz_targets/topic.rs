//! Topic patterns against routing keys: the trie agrees with a plain dynamic-programming
//! matcher of RabbitMQ's rules, and answers in bounded time whatever the `#` count.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warren::exchange::topic::TopicTrie;

fn words(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('.').collect()
    }
}

/// m[i][j]: the first i pattern words match the first j key words.
fn reference(pattern: &str, key: &str) -> bool {
    let (p, k) = (words(pattern), words(key));
    let mut m = vec![vec![false; k.len() + 1]; p.len() + 1];
    m[0][0] = true;
    for i in 1..=p.len() {
        for j in 0..=k.len() {
            m[i][j] = match p[i - 1] {
                "#" => m[i - 1][j] || (j > 0 && m[i][j - 1]),
                "*" => j > 0 && m[i - 1][j - 1],
                w => j > 0 && w == k[j - 1] && m[i - 1][j - 1],
            };
        }
    }
    m[p.len()][k.len()]
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let key = parts
        .next()
        .unwrap_or("")
        .chars()
        .take(255)
        .collect::<String>();
    let patterns: Vec<String> = parts
        .take(16)
        .map(|p| p.chars().take(255).collect())
        .collect();
    let mut trie = TopicTrie::default();
    for (i, p) in patterns.iter().enumerate() {
        trie.insert(p, i);
    }
    let mut got = vec![false; patterns.len()];
    trie.matches(&key, &mut |i| got[*i] = true);
    for (i, p) in patterns.iter().enumerate() {
        assert_eq!(got[i], reference(p, &key), "pattern {p:?} key {key:?}");
    }
});
