//! Schema evolution: is a new schema file safe for the files already written?
//!
//! Input: the old and the new [`TableSchema`]. Output: one [`Change`] per
//! column that differs, each compatible or not with the reason, and an
//! overall verdict. Compatible: adding a nullable column, adding a struct
//! field, widening integers (tinyint→smallint→int→bigint), float→double,
//! decimal precision up at the same scale, varchar(n)→varchar(m≥n) or
//! string, required→nullable. Anything else is refused, because files
//! already written would no longer read as the table says.

use super::{ColType, TableSchema};

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub column: String,
    pub what: String,
    pub compatible: bool,
    pub reason: String,
}

fn int_rank(t: &ColType) -> Option<u8> {
    match t {
        ColType::TinyInt => Some(1),
        ColType::SmallInt => Some(2),
        ColType::Int => Some(3),
        ColType::BigInt => Some(4),
        _ => None,
    }
}

/// Why `old` cannot become `new`, or None when existing data still reads.
pub fn type_change(old: &ColType, new: &ColType) -> Option<String> {
    use ColType::*;
    if old == new {
        return None;
    }
    match (old, new) {
        (a, b) if int_rank(a).is_some() && int_rank(b).is_some() => {
            if int_rank(b) > int_rank(a) {
                None
            } else {
                Some(format!("narrowing {} to {} would overflow values already written", a.glue(), b.glue()))
            }
        }
        (Float, Double) => None,
        (Decimal { precision: p1, scale: s1 }, Decimal { precision: p2, scale: s2 }) => {
            if s1 == s2 && p2 >= p1 {
                None
            } else {
                Some(format!("decimal({p1},{s1}) → decimal({p2},{s2}): only the precision may grow, at the same scale"))
            }
        }
        (Varchar(a), Varchar(b)) if b >= a => None,
        (Varchar(_), String) => None,
        (Array(a), Array(b)) => type_change(a, b).map(|r| format!("array element: {r}")),
        (Map(k1, v1), Map(k2, v2)) => {
            if k1 != k2 {
                Some(format!("map key type {} → {} changes existing keys", k1.glue(), k2.glue()))
            } else {
                type_change(v1, v2).map(|r| format!("map value: {r}"))
            }
        }
        (Struct(a), Struct(b)) => {
            for f in a {
                match b.iter().find(|g| g.name == f.name) {
                    None => return Some(format!("struct field '{}' removed; existing files have it", f.name)),
                    Some(g) => {
                        if let Some(r) = type_change(&f.ty, &g.ty) {
                            return Some(format!("struct field '{}': {r}", f.name));
                        }
                    }
                }
            }
            None
        }
        (a, b) => Some(format!("{} → {} is not a widening; files already written hold {} values", a.glue(), b.glue(), a.glue())),
    }
}

pub fn diff(old: &TableSchema, new: &TableSchema) -> Vec<Change> {
    let mut out = Vec::new();
    let ch = |column: &str, what: String, reason: Option<String>| Change {
        column: column.to_string(),
        what,
        compatible: reason.is_none(),
        reason: reason.unwrap_or_default(),
    };
    if old.table != new.table {
        out.push(ch("-", format!("table {} → {}", old.table, new.table), Some("a schema file describes one table; rename it in Glue instead".into())));
    }
    for oc in &old.columns {
        match new.columns.iter().find(|c| c.name == oc.name) {
            None => out.push(ch(&oc.name, format!("removed ({})", oc.ty.glue()), Some("existing files and queries use it; keep the column (it may stay null)".into()))),
            Some(nc) => {
                if oc.ty != nc.ty {
                    let r = type_change(&oc.ty, &nc.ty);
                    out.push(ch(&oc.name, format!("type {} → {}", oc.ty.glue(), nc.ty.glue()), r));
                }
                if oc.required != nc.required {
                    let r = (!oc.required).then(|| "files already written may hold nulls in it".to_string());
                    out.push(ch(&oc.name, format!("required {} → {}", oc.required, nc.required), r));
                }
                if oc.source != nc.source {
                    out.push(ch(&oc.name, format!("source {} → {}", oc.source.join("."), nc.source.join(".")), None));
                }
            }
        }
    }
    for nc in &new.columns {
        if !old.columns.iter().any(|c| c.name == nc.name) {
            let r = nc.required.then(|| "a new column cannot be required: files already written have no value for it".to_string());
            out.push(ch(&nc.name, format!("added ({})", nc.ty.glue()), r));
        }
    }
    let part = |s: &TableSchema| format!("{:?}|{:?}|{:?}", s.partition.hive_columns, s.partition.granularity, s.partition.layout);
    if part(old) != part(new) {
        out.push(ch("[partition]", "partition layout changed".into(), Some("existing objects and Glue partitions follow the old layout".into())));
    }
    if old.unknown_keys != new.unknown_keys {
        let r = (old.unknown_keys == super::UnknownKeys::Keep).then(|| "the _extra column would disappear".to_string());
        out.push(ch("-", format!("unknown_keys {:?} → {:?}", old.unknown_keys, new.unknown_keys), r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(cols: &str) -> TableSchema {
        TableSchema::parse("x.toml", &format!("table = \"t\"\n{cols}")).unwrap()
    }
    fn col(name: &str, ty: &str, req: bool) -> String {
        format!("[[columns]]\nname = \"{name}\"\ntype = \"{ty}\"\nrequired = {req}\n")
    }

    #[test]
    fn compatible_changes() {
        let old = schema(&(col("a", "int", true) + &col("s", "struct<x:int>", false) + &col("d", "decimal(5,2)", false)));
        let new = schema(&(col("a", "bigint", false) + &col("s", "struct<x:bigint,y:string>", false)
            + &col("d", "decimal(9,2)", false) + &col("n", "string", false)));
        let d = diff(&old, &new);
        assert!(d.iter().all(|c| c.compatible), "{d:?}");
        assert_eq!(d.len(), 5);
    }

    #[test]
    fn incompatible_changes_say_why() {
        let old = schema(&(col("a", "bigint", false) + &col("b", "string", false) + &col("s", "struct<x:int>", false)));
        for (new, needle) in [
            (col("a", "int", false) + &col("b", "string", false) + &col("s", "struct<x:int>", false), "narrowing bigint to int"),
            (col("a", "bigint", false) + &col("s", "struct<x:int>", false), "removed"),
            (col("a", "bigint", false) + &col("b", "int", false) + &col("s", "struct<x:int>", false), "not a widening"),
            (col("a", "bigint", false) + &col("b", "string", false) + &col("s", "struct<y:int>", false), "struct field 'x' removed"),
            (col("a", "bigint", false) + &col("b", "string", true) + &col("s", "struct<x:int>", false), "may hold nulls"),
            (col("a", "bigint", false) + &col("b", "string", false) + &col("s", "struct<x:int>", false) + &col("c", "int", true), "cannot be required"),
        ] {
            let d = diff(&old, &schema(&new));
            let bad: Vec<_> = d.iter().filter(|c| !c.compatible).collect();
            assert_eq!(bad.len(), 1, "{d:?}");
            assert!(bad[0].reason.contains(needle) || bad[0].what.contains(needle), "{needle}: {d:?}");
        }
        assert!(type_change(&ColType::parse("decimal(9,2)").unwrap(), &ColType::parse("decimal(9,3)").unwrap()).is_some());
    }
}
