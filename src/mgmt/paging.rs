//! Sorting, column selection, filtering by name and pagination of list answers, as RabbitMQ's
//! management API does them (`sort`, `sort_reverse`, `columns`, and with `page`: `page_size`
//! up to 500, `name` (case-insensitive, a regex with `use_regex=true`), answered with its page
//! object). Applied after routing, so every list endpoint gets them.

use super::http::{Request, Response};
use serde_json::{json, Map, Value};

const MAX_PAGE_SIZE: u64 = 500;

fn param<'a>(req: &'a Request, key: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn lookup<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// Order of two JSON values: numbers by value, strings by text, null first.
fn compare(a: &Value, b: &Value) -> std::cmp::Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => std::cmp::Ordering::Equal,
        (Value::Null, _) => std::cmp::Ordering::Less,
        (_, Value::Null) => std::cmp::Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Only the named columns ("arguments.x-max-length" keeps that key inside `arguments`).
fn select(item: &Value, columns: &[&str]) -> Value {
    let mut out = Map::new();
    for col in columns {
        let mut parts = col.split('.');
        let Some(head) = parts.next() else { continue };
        let rest: Vec<&str> = parts.collect();
        if rest.is_empty() {
            if let Some(v) = item.get(head) {
                out.insert(head.to_string(), v.clone());
            }
            continue;
        }
        let inner = out
            .entry(head.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        let v = lookup(&item[head], &rest.join("."));
        if let (Value::Object(m), false) = (inner, v.is_null()) {
            m.insert(rest.join("."), v.clone());
        }
    }
    Value::Object(out)
}

pub fn apply(req: &Request, resp: Response) -> Response {
    let asks = ["page", "sort", "columns"]
        .iter()
        .any(|k| param(req, k).is_some());
    if req.method != "GET" || resp.status != 200 || !asks {
        return resp;
    }
    let Ok(Value::Array(mut items)) = serde_json::from_slice::<Value>(&resp.body) else {
        return resp;
    };
    if let Some(key) = param(req, "sort").filter(|k| !k.is_empty()) {
        items.sort_by(|a, b| compare(lookup(a, key), lookup(b, key)));
    }
    if param(req, "sort_reverse") == Some("true") {
        items.reverse();
    }
    let columns: Option<Vec<&str>> =
        param(req, "columns").map(|c| c.split(',').filter(|s| !s.is_empty()).collect());
    let shape = |items: Vec<Value>| -> Vec<Value> {
        match &columns {
            Some(cols) => items.iter().map(|i| select(i, cols)).collect(),
            None => items,
        }
    };
    let Some(page) = param(req, "page") else {
        return Response::json(200, &Value::Array(shape(items)));
    };
    let (Ok(page), Ok(size)) = (
        page.parse::<u64>(),
        param(req, "page_size").unwrap_or("100").parse::<u64>(),
    ) else {
        return Response::error(400, "bad_request", "Pagination parameters are invalid");
    };
    if page == 0 || size == 0 || size > MAX_PAGE_SIZE {
        return Response::error(
            400,
            "invalid_pagination_parameters",
            format!("Invalid pagination parameters: page number {page}, page size {size}"),
        );
    }
    let total = items.len();
    if let Some(name) = param(req, "name").filter(|n| !n.is_empty()) {
        let regex = param(req, "use_regex") == Some("true");
        let matcher = if regex {
            match regex::RegexBuilder::new(name)
                .case_insensitive(true)
                .size_limit(256 * 1024)
                .build()
            {
                Ok(r) => Some(r),
                Err(e) => {
                    return Response::error(400, "bad_request", format!("invalid regex: {e}"))
                }
            }
        } else {
            None
        };
        let needle = name.to_lowercase();
        items.retain(|i| {
            let n = i["name"].as_str().unwrap_or_default();
            match &matcher {
                Some(r) => r.is_match(n),
                None => n.to_lowercase().contains(&needle),
            }
        });
    }
    let filtered = items.len() as u64;
    let page_count = filtered.div_ceil(size);
    if page > page_count.max(1) {
        return Response::error(
            400,
            "page_out_of_range",
            format!("Page out of range, page: {page} page size: {size}, len: {filtered}"),
        );
    }
    let start = usize::try_from((page - 1) * size).unwrap_or(usize::MAX);
    let slice: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(usize::try_from(size).unwrap_or(usize::MAX))
        .collect();
    let slice = shape(slice);
    Response::json(
        200,
        &json!({"filtered_count": filtered, "item_count": slice.len(), "items": slice,
                "page": page, "page_count": page_count, "page_size": size,
                "total_count": total}),
    )
}
