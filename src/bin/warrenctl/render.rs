//! Showing answers: lists as tables, tab-separated values or JSON.

use crate::words::s;
use crate::{request, Args, Res};
use serde_json::Value;

pub(crate) fn list(a: &Args, v: &str, kind: &str, cols: &[&str]) -> Res<String> {
    let (path, default): (String, &[&str]) = match kind {
        "queues" => (
            format!("queues/{v}"),
            &[
                "name",
                "durable",
                "messages_ready",
                "messages_unacknowledged",
                "consumers",
            ],
        ),
        "exchanges" => (
            format!("exchanges/{v}"),
            &["name", "type", "durable", "auto_delete", "internal"],
        ),
        "bindings" => (
            format!("bindings/{v}"),
            &["source", "destination", "destination_type", "routing_key"],
        ),
        "connections" => ("connections".into(), &["name", "user", "vhost", "channels"]),
        "consumers" => (
            format!("consumers/{v}"),
            &[
                "queue.name",
                "consumer_tag",
                "ack_required",
                "prefetch_count",
            ],
        ),
        "vhosts" => ("vhosts".into(), &["name", "messages"]),
        other => return Err(format!("cannot list '{other}'")),
    };
    let r = request(a, "GET", &path, None)?;
    let cols: Vec<&str> = if cols.is_empty() {
        default.to_vec()
    } else {
        cols.to_vec()
    };
    Ok(render(a, &r, &cols))
}

/// Rows of `r` (an array of objects) as a table, tab-separated values, or JSON.
pub(crate) fn render(a: &Args, r: &Value, cols: &[&str]) -> String {
    if a.format == "json" {
        return serde_json::to_string_pretty(r).unwrap_or_default();
    }
    let rows: Vec<Vec<String>> = r
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| cols.iter().map(|c| cell(item, c)).collect())
                .collect()
        })
        .unwrap_or_default();
    if a.format == "tsv" {
        return rows
            .iter()
            .map(|r| r.join("\t"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let mut widths: Vec<usize> = cols.iter().map(|c| c.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![line(cols.iter().map(|c| c.to_string()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// A column may reach into nested objects: "queue.name".
pub(crate) fn cell(item: &Value, col: &str) -> String {
    s(col.split('.').fold(item, |v, k| &v[k]))
}
