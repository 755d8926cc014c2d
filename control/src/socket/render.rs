//! Human rendering of command results for `meshctl`: objects become
//! aligned `key: value` lines, arrays of objects become aligned tables,
//! nested values are indented. Generic over any JSON, so a new result
//! field shows up without a `meshctl` change.

use serde_json::{Map, Value};

/// Renders any result; the text ends with a newline unless empty.
pub fn render(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) => render_object(map, 0, &mut out),
        Value::Array(items) => render_array(items, 0, &mut out),
        Value::Null => {}
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

/// Renders rows as a table: one column per key (in first-seen order across
/// rows), upper-case headers, numbers right-aligned, missing cells `-`.
pub fn render_table(rows: &[Map<String, Value>]) -> String {
    let mut out = String::new();
    table(rows, 0, &mut out);
    out
}

/// Shards shown one column each without `wide`; more get min and max.
const SHARD_COLUMNS: usize = 4;

/// The `stats` result, readable in 100 columns: everything but the
/// counters as [`render`] does it, then the counters transposed — one row
/// per counter, a total column and one per shard (more than four shards:
/// min and max per shard instead, unless `wide`). Counters at zero
/// everywhere are left out unless `wide`.
pub fn render_stats(value: &Value, wide: bool) -> String {
    let Some(map) = value.as_object() else {
        return render(value);
    };
    let mut rest = map.clone();
    let totals = rest.remove("total");
    let shards = rest.remove("shards");
    let mut out = String::new();
    render_object(&rest, 0, &mut out);
    let (Some(Value::Object(totals)), Some(Value::Array(shards))) = (totals, shards) else {
        return out;
    };
    let per_shard = wide || shards.len() <= SHARD_COLUMNS;
    let mut rows = Vec::new();
    let mut hidden = 0;
    for (name, total) in &totals {
        let values: Vec<u64> = shards
            .iter()
            .map(|s| s.get(name).and_then(Value::as_u64).unwrap_or(0))
            .collect();
        if !wide && total.as_u64() == Some(0) {
            hidden += 1;
            continue;
        }
        let mut row = Map::new();
        row.insert("counter".into(), Value::String(name.clone()));
        row.insert("total".into(), total.clone());
        if per_shard {
            for (i, v) in values.iter().enumerate() {
                row.insert(format!("shard {i}"), Value::from(*v));
            }
        } else {
            let min = values.iter().min().copied().unwrap_or(0);
            let max = values.iter().max().copied().unwrap_or(0);
            row.insert("shard min".into(), Value::from(min));
            row.insert("shard max".into(), Value::from(max));
        }
        rows.push(row);
    }
    out.push_str("counters:\n");
    table(&rows, 2, &mut out);
    if hidden > 0 || !per_shard {
        out.push_str(&format!(
            "  ({hidden} counters at zero not shown; --wide shows them and every shard)\n"
        ));
    }
    out
}

fn render_object(map: &Map<String, Value>, indent: usize, out: &mut String) {
    let width = map
        .iter()
        .filter(|(_, v)| is_inline(v))
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (key, value) in map {
        pad(out, indent);
        out.push_str(key);
        out.push(':');
        if is_inline(value) {
            let text = match value {
                Value::Array(items) if items.is_empty() => "(none)".to_owned(),
                Value::Array(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(", "),
                scalar => scalar_text(scalar),
            };
            pad(out, width - key.chars().count() + 1);
            out.push_str(&text);
            out.push('\n');
            continue;
        }
        out.push('\n');
        match value {
            Value::Object(inner) => render_object(inner, indent + 2, out),
            Value::Array(items) => render_array(items, indent + 2, out),
            Value::String(s) => {
                for line in s.lines() {
                    pad(out, indent + 2);
                    out.push_str(&sanitize(line));
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
}

fn render_array(items: &[Value], indent: usize, out: &mut String) {
    if items.is_empty() {
        pad(out, indent);
        out.push_str("(none)\n");
    } else if items.iter().all(Value::is_object) {
        let rows: Vec<Map<String, Value>> = items
            .iter()
            .filter_map(|v| v.as_object().cloned())
            .collect();
        table(&rows, indent, out);
    } else {
        for item in items {
            match item {
                Value::Object(map) => {
                    render_object(map, indent, out);
                    pad(out, indent);
                    out.push_str("--\n");
                }
                other => {
                    pad(out, indent);
                    out.push_str(&cell_text(other));
                    out.push('\n');
                }
            }
        }
    }
}

fn table(rows: &[Map<String, Value>], indent: usize, out: &mut String) {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for key in row.keys() {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|c| row.get(*c).map_or_else(|| "-".to_owned(), cell_text))
                .collect()
        })
        .collect();
    let numeric: Vec<bool> = columns
        .iter()
        .map(|c| {
            let mut values = rows.iter().filter_map(|r| r.get(*c));
            values.clone().any(Value::is_number) && values.all(|v| v.is_number() || v.is_null())
        })
        .collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String], out: &mut String| {
        let mut text = " ".repeat(indent);
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let fill = widths[i] - cell.chars().count();
            if numeric[i] {
                text.push_str(&" ".repeat(fill));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(fill));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header, out);
    for row in &cells {
        line(row, out);
    }
}

/// Shown on the key's line: scalars (single-line strings) and arrays of
/// scalars.
fn is_inline(v: &Value) -> bool {
    match v {
        Value::Object(_) => false,
        Value::String(s) => !s.contains('\n'),
        Value::Array(items) => items.iter().all(|i| {
            !i.is_object() && !i.is_array() && !matches!(i, Value::String(s) if s.contains('\n'))
        }),
        _ => true,
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => sanitize(s),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A table cell: scalars as text, arrays of scalars comma-joined, anything
/// else compact JSON.
fn cell_text(v: &Value) -> String {
    match v {
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.iter().map(scalar_text).collect::<Vec<_>>().join(",")
            }
        }
        Value::Array(_) | Value::Object(_) => v.to_string(),
        scalar => scalar_text(scalar),
    }
}

/// Control characters from the daemon are shown escaped, never sent to
/// the terminal.
fn sanitize(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn pad(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(v: Value) -> Vec<Map<String, Value>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect()
    }

    fn stats(shards: usize) -> Value {
        let names = ["requests", "retries", "tls_failures"];
        let shard_rows: Vec<Value> = (0..shards)
            .map(|i| json!({"shard": i, "requests": 1000 + i, "retries": i, "tls_failures": 0}))
            .collect();
        let mut total = Map::new();
        for n in names {
            let sum: u64 = shard_rows.iter().map(|r| r[n].as_u64().unwrap()).sum();
            total.insert(n.into(), json!(sum));
        }
        json!({"total": total, "latency_us": {"count": 0}, "shards": shard_rows})
    }

    #[test]
    fn stats_transposes_the_counters_and_fits_100_columns() {
        let two = render_stats(&stats(2), false);
        assert!(two.contains("COUNTER") && two.contains("SHARD 1"), "{two}");
        let row = two
            .lines()
            .find(|l| l.trim_start().starts_with("requests"))
            .unwrap();
        assert!(
            row.contains("2001") && row.contains("1000") && row.contains("1001"),
            "{row}"
        );
        assert!(
            !two.contains("tls_failures"),
            "zero counters are left out: {two}"
        );
        assert!(two.contains("1 counters at zero"), "{two}");
        let many = render_stats(&stats(64), false);
        assert!(many.lines().all(|l| l.chars().count() <= 100), "{many}");
        assert!(
            many.contains("SHARD MIN") && !many.contains("SHARD 63"),
            "{many}"
        );
        let wide = render_stats(&stats(64), true);
        assert!(wide.contains("SHARD 63") && wide.contains("tls_failures"));
    }

    #[test]
    fn table_aligns_columns_and_fills_gaps() {
        let t = render_table(&rows(json!([
            {"cluster": "api", "address": "10.0.0.1:8080", "state": "up", "active": 12},
            {"cluster": "payments-eu", "address": "10.0.0.22:80", "active": 3},
            {"cluster": "x", "address": "[::1]:1", "state": "draining", "active": 1024, "note": null},
        ])));
        let expected = "\
CLUSTER      ADDRESS        STATE     ACTIVE  NOTE
api          10.0.0.1:8080  up            12  -
payments-eu  10.0.0.22:80   -              3  -
x            [::1]:1        draining    1024  -
";
        assert_eq!(t, expected);
    }

    #[test]
    fn object_renders_aligned_key_value_lines() {
        let text = render(&json!({
            "version": "0.1.0",
            "uptime_s": 12,
            "shards": [{"shard": 0, "active": 3}, {"shard": 1, "active": 0}],
            "listeners": ["a", "b"],
            "empty": [],
            "snapshot": {"generation": 4},
        }));
        let expected = "\
version:   0.1.0
uptime_s:  12
shards:
  SHARD  ACTIVE
      0       3
      1       0
listeners: a, b
empty:     (none)
snapshot:
  generation: 4
";
        assert_eq!(text, expected);
    }

    #[test]
    fn multi_line_strings_are_indented_and_control_chars_escaped() {
        let text = render(&json!({"toml": "[control]\nsocket = \"x\"\n", "name": "a\u{1b}[2J"}));
        assert_eq!(
            text,
            "toml:\n  [control]\n  socket = \"x\"\nname: a\\u{1b}[2J\n"
        );
    }

    #[test]
    fn scalars_and_empty_arrays() {
        assert_eq!(render(&json!("done")), "done\n");
        assert_eq!(render(&json!([])), "(none)\n");
        assert_eq!(render(&Value::Null), "");
        assert_eq!(render(&json!([1, "a"])), "1\na\n");
    }

    #[test]
    fn nested_cells_are_compact() {
        let t = render_table(&rows(json!([
            {"route": "r", "hosts": ["a.example", "b.example"], "match": {"path": "/"}},
        ])));
        assert_eq!(
            t,
            "ROUTE  HOSTS                MATCH\nr      a.example,b.example  {\"path\":\"/\"}\n"
        );
    }
}
