//! Nested access: `a.b` / `a->b` on structs, `arr[i]` and `arr[i:j]` on lists.
//!
//! Access into something that is not there (a missing key, an index out of range, a null
//! parent, a key of a number or string) gives null, as eKuiper does for missing fields.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, GenericListArray, Int64Array, UInt32Array, make_array, new_null_array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Int64Type};

use super::{Columnar, EvalContext, describe_value};

/// `base.name`: the child column of a struct, null where the parent is null. On a value that
/// is neither an object nor an array (a number, a string, ...) it is null without an error, as
/// in eKuiper (`xsql/valuer.go` treats `x->f` on such a value as an operator with a null side);
/// on an array it is an error.
pub fn field(base: Columnar, name: &str, ctx: &mut EvalContext) -> Result<Columnar, String> {
    let scalar = base.is_scalar();
    let arr = base.array().clone();
    let DataType::Struct(fields) = arr.data_type() else {
        if matches!(arr.data_type(), DataType::List(_)) {
            flag_present(&arr, ctx, |v| {
                format!("cannot access field \"{name}\" of {v}")
            });
        }
        return Ok(Columnar::Scalar(new_null_array(&DataType::Null, 1)));
    };
    let idx = fields.iter().position(|f| f.name() == name).or_else(|| {
        fields
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))
    });
    let Some(idx) = idx else {
        return Ok(Columnar::Scalar(new_null_array(&DataType::Null, 1)));
    };
    let st = arr.as_struct();
    let child = st.column(idx).clone();
    let nulls = NullBuffer::union(st.nulls(), child.nulls());
    let child = if nulls.as_ref() != child.nulls() {
        let data = child
            .to_data()
            .into_builder()
            .nulls(nulls)
            .build()
            .map_err(|e| e.to_string())?;
        make_array(data)
    } else {
        child
    };
    Ok(if scalar {
        Columnar::Scalar(child)
    } else {
        Columnar::Array(child)
    })
}

fn flag_present(arr: &ArrayRef, ctx: &mut EvalContext, msg: impl Fn(String) -> String) {
    let arr = if arr.len() == ctx.rows {
        arr.clone()
    } else {
        super::repeat(arr, ctx.rows)
    };
    for row in 0..ctx.rows {
        if super::present(arr.as_ref(), row) {
            ctx.errors
                .flag(row, || msg(describe_value(arr.as_ref(), row)));
        }
    }
}

/// Integer positions for indexing, from a BIGINT or FLOAT value (floats truncate).
fn positions(idx: Columnar, rows: usize) -> Result<Int64Array, String> {
    let arr = idx.into_array(rows);
    let arr = match arr.data_type() {
        DataType::Int64 => arr,
        t if t.is_integer() || t.is_floating() || t == &DataType::Null => {
            cast(arr.as_ref(), &DataType::Int64).map_err(|e| e.to_string())?
        }
        other => return Err(format!("array index must be a number, got {other}")),
    };
    Ok(arr.as_primitive::<Int64Type>().clone())
}

/// `base[index]`: one element per row; negative indexes count from the end.
pub fn index(base: Columnar, idx: Columnar, ctx: &mut EvalContext) -> Result<Columnar, String> {
    let rows = ctx.rows;
    let arr = base.into_array(rows);
    let DataType::List(item) = arr.data_type() else {
        if arr.data_type() != &DataType::Null {
            flag_present(&arr, ctx, |v| format!("cannot index {v}"));
        }
        return Ok(Columnar::Scalar(new_null_array(&DataType::Null, 1)));
    };
    let list = arr.as_list::<i32>();
    let pos = positions(idx, rows)?;
    let offsets = list.value_offsets();
    let picks: UInt32Array = (0..rows)
        .map(|row| {
            if list.is_null(row) || pos.is_null(row) {
                return None;
            }
            let (start, end) = (offsets[row] as i64, offsets[row + 1] as i64);
            let len = end - start;
            let k = pos.value(row);
            let k = if k < 0 { len + k } else { k };
            (0..len).contains(&k).then(|| (start + k) as u32)
        })
        .collect();
    let out = take(list.values().as_ref(), &picks, None).map_err(|e| e.to_string())?;
    debug_assert_eq!(out.data_type(), item.data_type());
    Ok(Columnar::Array(out))
}

/// `base[start:end]`: end-exclusive slices; a missing bound means the start or end of the array.
pub fn slice(
    base: Columnar,
    start: Option<Columnar>,
    end: Option<Columnar>,
    ctx: &mut EvalContext,
) -> Result<Columnar, String> {
    let rows = ctx.rows;
    let arr = base.into_array(rows);
    let DataType::List(item) = arr.data_type() else {
        if arr.data_type() != &DataType::Null {
            flag_present(&arr, ctx, |v| format!("cannot slice {v}"));
        }
        return Ok(Columnar::Scalar(new_null_array(&DataType::Null, 1)));
    };
    let list = arr.as_list::<i32>();
    let start = start.map(|s| positions(s, rows)).transpose()?;
    let end = end.map(|e| positions(e, rows)).transpose()?;
    let offsets = list.value_offsets();
    let mut picks: Vec<u32> = Vec::new();
    let mut new_offsets = vec![0i32];
    for row in 0..rows {
        if list.is_valid(row) {
            let (s, e) = (offsets[row] as i64, offsets[row + 1] as i64);
            let len = e - s;
            let norm = |k: i64| (if k < 0 { len + k } else { k }).clamp(0, len);
            let from = start.as_ref().map_or(0, |p| norm(p.value(row)));
            let to = end.as_ref().map_or(len, |p| norm(p.value(row)));
            for k in from..to.max(from) {
                picks.push((s + k) as u32);
            }
        }
        new_offsets.push(picks.len() as i32);
    }
    let values =
        take(list.values().as_ref(), &UInt32Array::from(picks), None).map_err(|e| e.to_string())?;
    let out = GenericListArray::<i32>::try_new(
        Arc::new(Field::new("item", item.data_type().clone(), true)),
        OffsetBuffer::new(new_offsets.into()),
        values,
        list.nulls().cloned(),
    )
    .map_err(|e| e.to_string())?;
    Ok(Columnar::Array(Arc::new(out)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::ListArray;

    fn list() -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2), Some(3)]),
            None,
            Some(vec![Some(4)]),
        ]))
    }

    #[test]
    fn index_from_start_and_end() {
        let mut ctx = EvalContext::new(3);
        let idx = Columnar::Scalar(Arc::new(Int64Array::from(vec![-1])));
        let out = index(Columnar::Array(list()), idx, &mut ctx)
            .unwrap()
            .into_array(3);
        let out = out.as_primitive::<Int64Type>();
        assert_eq!(out.value(0), 3);
        assert!(out.is_null(1));
        assert_eq!(out.value(2), 4);
    }

    #[test]
    fn slice_is_end_exclusive() {
        let mut ctx = EvalContext::new(3);
        let s = Columnar::Scalar(Arc::new(Int64Array::from(vec![1])));
        let out = slice(Columnar::Array(list()), Some(s), None, &mut ctx)
            .unwrap()
            .into_array(3);
        let out = out.as_list::<i32>();
        assert_eq!(out.value(0).as_primitive::<Int64Type>().values(), &[2, 3]);
        assert!(out.is_null(1));
        assert_eq!(out.value(2).len(), 0);
    }
}
