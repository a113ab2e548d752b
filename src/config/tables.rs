//! `[routing]` and `[[tables]]`: one stream into several tables; and the
//! `[catalog]` of an Iceberg table (`[table] format = "iceberg"`).
//!
//! Input: the raw `[routing]` section (route column, mode) and the
//! `[[tables]]` entries (schema file, lake URL, error URL, and the route
//! values the table takes or `default = true`). Output: a
//! [`RoutingConfig`]: routes with canonical value texts and each table's
//! resolved paths. Failure: [`ConfigError`] naming the file, the line of
//! the entry's key, the key (`tables[1].values`) and the fix. For an
//! Iceberg table: its catalog (SQL on a SQLite file, or Glue), warehouse
//! URL (a directory made absolute) and namespace.

use super::ConfigError;
use crate::lanes::{Mode, Routes};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRouting {
    column: Option<String>,
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTableEntry {
    schema: Option<String>,
    url: Option<String>,
    errors: Option<String>,
    values: Option<Vec<toml::Value>>,
    #[serde(default)]
    default: bool,
}

/// One routed table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableConfig {
    pub schema_path: PathBuf,
    pub url: String,
    pub errors: String,
}

/// The routes and the tables, in the file's order.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub routes: Routes,
    pub tables: Vec<TableConfig>,
}

/// Line of `key` in the `i`-th `[[tables]]` entry (or of its header).
fn entry_line(text: &str, i: usize, key: &str) -> Option<usize> {
    let mut n = None;
    let mut header = None;
    for (l, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if t.replace(' ', "") == "[[tables]]" {
                n = Some(n.map_or(0, |k| k + 1));
                if n == Some(i) {
                    header = Some(l + 1);
                }
            } else {
                n = n.map(|_| usize::MAX / 2);
            }
        } else if n == Some(i) && t.split('=').next().map(str::trim) == Some(key) {
            return Some(l + 1);
        }
    }
    header
}

/// Validates `[routing]` and `[[tables]]`; `resolve` and `resolve_url`
/// turn relative paths into the config directory's.
pub(super) fn routing(
    file: &str,
    text: &str,
    raw: Option<&RawRouting>,
    entries: &[RawTableEntry],
    resolve: &dyn Fn(&str) -> PathBuf,
    resolve_url: &dyn Fn(&str) -> String,
) -> Result<Option<RoutingConfig>, ConfigError> {
    let err = |i: usize, key: &str, message: String| ConfigError {
        file: file.to_string(),
        line: entry_line(text, i, key),
        key: format!("tables[{i}].{key}"),
        message,
    };
    let routing_err = |key: &str, message: String| ConfigError {
        file: file.to_string(),
        line: super::locate(text, "routing", key),
        key: format!("routing.{key}"),
        message,
    };
    if entries.is_empty() {
        return match raw {
            Some(_) => Err(routing_err("column", "[routing] needs [[tables]] entries to route to; remove it or add the tables".into())),
            None => Ok(None),
        };
    }
    let raw = raw.ok_or_else(|| routing_err("column", "[[tables]] need a [routing] section naming the route column, e.g. column = \"event_type\"".into()))?;
    let column = raw.column.clone().filter(|c| !c.is_empty()).ok_or_else(|| routing_err("column", "missing; name the top-level column whose value picks the table, e.g. column = \"event_type\"".into()))?;
    let mode = match raw.mode.as_deref() {
        None | Some("first") => Mode::First,
        Some("all") => Mode::All,
        Some(o) => return Err(routing_err("mode", format!("{o:?} is not a mode; use \"first\" (the first table that lists the value) or \"all\" (every table that does)"))),
    };
    let (mut tables, mut values) = (Vec::new(), Vec::new());
    for (i, e) in entries.iter().enumerate() {
        let schema = e.schema.as_deref().ok_or_else(|| err(i, "schema", "missing; set the table's schema file, e.g. schema = \"schemas/purchases.toml\"".into()))?;
        let url = e.url.as_deref().ok_or_else(|| err(i, "url", "missing; set the table's lake URL, e.g. url = \"s3://bucket/purchases/\"".into()))?;
        let errors = e.errors.as_deref().ok_or_else(|| err(i, "errors", "missing; set where the table's bad records go, e.g. errors = \"s3://bucket/errors/purchases/\"".into()))?;
        for (key, u) in [("url", url), ("errors", errors)] {
            if u.contains("://") && !(u.starts_with("s3://") || u.starts_with("file:///")) {
                return Err(err(i, key, format!("{u:?} is not supported; use s3://bucket/prefix/ or file:///absolute/path/")));
            }
        }
        let v = match (&e.values, e.default) {
            (Some(_), true) => return Err(err(i, "default", "a table takes listed values or is the default, not both".into())),
            (None, false) => return Err(err(i, "values", format!("missing; list the {column} values this table takes, e.g. values = [\"purchase\"], or set default = true"))),
            (None, true) => {
                if values.iter().any(Option::is_none) {
                    return Err(err(i, "default", "only one table can be the default".into()));
                }
                None
            }
            (Some(list), false) => {
                if list.is_empty() {
                    return Err(err(i, "values", "the list is empty: the table would take nothing".into()));
                }
                let texts = list
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s.clone()),
                        toml::Value::Integer(n) => Ok(n.to_string()),
                        toml::Value::Boolean(b) => Ok(b.to_string()),
                        other => Err(err(i, "values", format!("{other} is not a string, integer or boolean"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(texts)
            }
        };
        values.push(v);
        tables.push(TableConfig { schema_path: resolve(schema), url: resolve_url(url), errors: resolve_url(errors) });
    }
    Ok(Some(RoutingConfig { routes: Routes { column: column.to_ascii_lowercase(), mode, values }, tables }))
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use crate::lanes::Mode;

    const ROUTED: &str = r#"
[source]
kind = "spool"
dir = "spool"

[sink]
errors = "errors/unrouted"
raw_backup = "raw"

[routing]
column = "event_type"

[[tables]]
schema = "schemas/purchases.toml"
url = "lake/purchases"
errors = "errors/purchases"
values = ["purchase", "refund"]

[[tables]]
schema = "schemas/events.toml"
url = "s3://lake/events/"
errors = "errors/events"
default = true
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse("/etc/lh/l.toml", text, std::iter::empty()).map_err(|e| e.to_string())
    }

    /// A routed config: tables in order, paths resolved, values as text;
    /// the first table's schema and lake stand in for the single-table
    /// fields, and the shared error prefix is `[sink] errors`.
    #[test]
    fn tables_and_routes_are_read_in_order() {
        let c = parse(ROUTED).unwrap();
        let r = c.routing.as_ref().unwrap();
        assert_eq!((r.routes.column.as_str(), r.routes.mode), ("event_type", Mode::First));
        assert_eq!(r.routes.values, vec![Some(vec!["purchase".to_string(), "refund".into()]), None]);
        assert_eq!(r.tables[0].url, "/etc/lh/lake/purchases/");
        assert_eq!(r.tables[1].url, "s3://lake/events/");
        assert_eq!(r.tables[1].errors, "/etc/lh/errors/events/");
        assert_eq!(c.schema_path, std::path::PathBuf::from("/etc/lh/schemas/purchases.toml"));
        assert_eq!(c.sink.errors, "/etc/lh/errors/unrouted/");
        let all = parse(&ROUTED.replace("column = \"event_type\"", "column = \"event_type\"\nmode = \"all\"").replace("values = [\"purchase\", \"refund\"]", "values = [1, true, \"x\"]")).unwrap();
        let r = all.routing.unwrap();
        assert_eq!(r.routes.mode, Mode::All);
        assert_eq!(r.routes.values[0], Some(vec!["1".to_string(), "true".into(), "x".into()]));
    }

    /// Every mistake names the file, the line of the entry's key and the key.
    #[test]
    fn routing_mistakes_name_line_and_key() {
        let cases = [
            (ROUTED.replace("default = true", "values = []"), "/etc/lh/l.toml:23: key `tables[1].values`: the list is empty"),
            (ROUTED.replace("default = true", ""), "key `tables[1].values`: missing; list the event_type values"),
            (ROUTED.replace("values = [\"purchase\", \"refund\"]", "default = true"), "key `tables[1].default`: only one table can be the default"),
            (ROUTED.replace("url = \"lake/purchases\"\n", ""), "/etc/lh/l.toml:13: key `tables[0].url`: missing"),
            (ROUTED.replace("column = \"event_type\"", "column = \"event_type\"\nmode = \"any\""), "key `routing.mode`: \"any\" is not a mode"),
            (ROUTED.replace("[routing]\ncolumn = \"event_type\"\n", ""), "key `routing.column`: [[tables]] need a [routing] section"),
            (ROUTED.replace("[sink]\n", "[table]\nschema = \"x.toml\"\n[sink]\n"), "key `table.schema`: with [[tables]], each table names its schema"),
            (ROUTED.replace("[sink]\n", "[sink]\nurl = \"lake\"\n"), "key `sink.url`: with [[tables]], each table names its url"),
            (ROUTED.replace("values = [\"purchase\", \"refund\"]", "values = [1.5]"), "key `tables[0].values`: 1.5 is not a string, integer or boolean"),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(e.contains(want), "{e:?} does not say {want:?}");
        }
    }
}

/// `[catalog]` of an Iceberg table: kind "sql" (uri = the SQLite file) or
/// "glue"; warehouse; database = the namespace.
pub(super) fn iceberg_catalog(raw: &super::Raw, resolve: &dyn Fn(&str) -> PathBuf, err: &dyn Fn(&str, &str, String) -> ConfigError) -> Result<super::CatalogConfig, ConfigError> {
    let c = &raw.catalog;
    let warehouse = |example: &str| -> Result<String, ConfigError> {
        let w = c.warehouse.as_deref().filter(|w| !w.is_empty()).ok_or_else(|| err("catalog", "warehouse", format!("missing; Iceberg tables are created under the warehouse, e.g. warehouse = {example:?}")))?;
        crate::iceberg::warehouse_url(w, resolve).map_err(|m| err("catalog", "warehouse", m))
    };
    let catalog = match c.kind.as_deref() {
        Some("sql") => {
            let uri = c.uri.as_deref().ok_or_else(|| err("catalog", "uri", "missing; the SQL catalog is a SQLite file, e.g. uri = \"iceberg/catalog.db\"".into()))?;
            let file = resolve(uri.strip_prefix("sqlite:").unwrap_or(uri).trim_start_matches("//"));
            crate::iceberg::IcebergCatalog::Sql { file, warehouse: warehouse("iceberg/warehouse")?, name: c.name.clone().unwrap_or_else(|| "default".into()) }
        }
        Some("glue") => crate::iceberg::IcebergCatalog::Glue { warehouse: warehouse("s3://bucket/warehouse")?, endpoint: c.endpoint.clone(), region: c.region.clone() },
        _ => return Err(err("catalog", "kind", "an Iceberg table needs its catalog: kind = \"sql\" (a SQLite file, with uri and warehouse) or \"glue\" (with database and warehouse)".into())),
    };
    let namespace = c.database.clone().filter(|d| !d.is_empty()).ok_or_else(|| err("catalog", "database", "missing; the Iceberg namespace (the Glue database) to put the table in, e.g. database = \"lake\"".into()))?;
    let table = raw.table.as_ref().and_then(|t| t.name.clone()).unwrap_or_default();
    Ok(super::CatalogConfig::Iceberg(crate::iceberg::IcebergConfig { catalog, namespace, table, checkpoints: true }))
}
