//! Printing in PyTorch's style: `tensor([[ 0.,  1.], [ 2.,  3.]])`, with the same choice
//! between integer-valued, fixed and scientific notation, alignment, line wrapping at 80
//! columns and summarisation of tensors over 1000 elements.

use super::Tensor;
use crate::host::HostBuffer;
use std::fmt;

const LINE_WIDTH: usize = 80;
const THRESHOLD: usize = 1000;
const EDGE_ITEMS: usize = 3;
const PRECISION: usize = 4;

/// How every element of one tensor is formatted, chosen from all its (shown) values.
enum Style {
    Int,
    Bool,
    FloatInt,
    Fixed,
    Sci,
}

impl Style {
    fn for_floats(values: &[f64]) -> Style {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let int_mode = finite.iter().all(|v| v.ceil() == *v);
        let nonzero: Vec<f64> = finite
            .iter()
            .filter(|v| **v != 0.0)
            .map(|v| v.abs())
            .collect();
        if nonzero.is_empty() {
            return if int_mode {
                Style::FloatInt
            } else {
                Style::Fixed
            };
        }
        let max = nonzero.iter().cloned().fold(f64::MIN, f64::max);
        let min = nonzero.iter().cloned().fold(f64::MAX, f64::min);
        if int_mode {
            if max / min > 1000.0 || max > 1e8 {
                Style::Sci
            } else {
                Style::FloatInt
            }
        } else if max / min > 1000.0 || max > 1e8 || min < 1e-4 {
            Style::Sci
        } else {
            Style::Fixed
        }
    }

    fn float(&self, v: f64) -> String {
        if v.is_nan() {
            return "nan".into();
        }
        if v.is_infinite() {
            return if v > 0.0 { "inf".into() } else { "-inf".into() };
        }
        match self {
            Style::FloatInt => format!("{v:.0}."),
            Style::Fixed => format!("{v:.PRECISION$}"),
            _ => python_sci(v),
        }
    }
}

/// Python's `'{:.4e}'`: the exponent has a sign and at least two digits.
fn python_sci(v: f64) -> String {
    let s = format!("{v:.PRECISION$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}

/// The nested-bracket body of a tensor (row-major `strings`, already formatted and padded).
fn body(
    strings: &[String],
    shape: &[usize],
    width: usize,
    indent: usize,
    summarize: bool,
) -> String {
    if shape.is_empty() {
        return strings[0].clone();
    }
    let n = shape[0];
    let shown = |n: usize| -> Vec<Option<usize>> {
        if summarize && n > 2 * EDGE_ITEMS {
            (0..EDGE_ITEMS)
                .map(Some)
                .chain([None])
                .chain((n - EDGE_ITEMS..n).map(Some))
                .collect()
        } else {
            (0..n).map(Some).collect()
        }
    };
    // Elements per row of `strings`, which hold only the shown part of each dim.
    let shown_len = |s: usize| {
        if summarize && s > 2 * EDGE_ITEMS {
            2 * EDGE_ITEMS
        } else {
            s
        }
    };
    let inner: usize = shape[1..].iter().map(|&s| shown_len(s)).product();
    let pos = |i: usize| {
        if summarize && n > 2 * EDGE_ITEMS && i >= n - EDGE_ITEMS {
            i - (n - 2 * EDGE_ITEMS)
        } else {
            i
        }
    };
    if shape.len() == 1 {
        let items: Vec<String> = shown(n)
            .into_iter()
            .map(|i| {
                i.map(|i| strings[pos(i)].clone())
                    .unwrap_or_else(|| " ...".into())
            })
            .collect();
        let per_line = ((LINE_WIDTH.saturating_sub(indent)) / (width + 2)).max(1);
        let lines: Vec<String> = items.chunks(per_line).map(|c| c.join(", ")).collect();
        return format!(
            "[{}]",
            lines.join(&format!(",\n{}", " ".repeat(indent + 1)))
        );
    }
    let parts: Vec<String> = shown(n)
        .into_iter()
        .map(|i| match i {
            Some(i) => {
                let p = pos(i);
                body(
                    &strings[p * inner..(p + 1) * inner],
                    &shape[1..],
                    width,
                    indent + 1,
                    summarize,
                )
            }
            None => "...".into(),
        })
        .collect();
    let sep = format!(
        ",{}{}",
        "\n".repeat(shape.len() - 1),
        " ".repeat(indent + 1)
    );
    format!("[{}]", parts.join(&sep))
}

/// The elements shown when summarising: the first and last `EDGE_ITEMS` of every long dim.
/// Every value in the one style chosen from all of them.
fn float_strings(v: &[f64]) -> Vec<String> {
    let style = Style::for_floats(v);
    v.iter().map(|&x| style.float(x)).collect()
}

fn summarized(t: &Tensor) -> crate::Result<Tensor> {
    let mut t = t.clone();
    for d in 0..t.ndim() {
        let n = t.shape()[d];
        if n > 2 * EDGE_ITEMS {
            let head = t.narrow(d as isize, 0, EDGE_ITEMS)?;
            let tail = t.narrow(d as isize, n - EDGE_ITEMS, EDGE_ITEMS)?;
            t = Tensor::cat(&[&head, &tail], d as isize)?;
        }
    }
    Ok(t)
}

fn render(t: &Tensor) -> crate::Result<String> {
    let _g = crate::no_grad();
    let prefix = "tensor(";
    let mut out = String::from(prefix);
    let summarize = t.numel() > THRESHOLD;
    if t.numel() == 0 {
        out.push_str("[]");
        if t.ndim() != 1 {
            let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
            out.push_str(&format!(
                ", size=({}{})",
                dims.join(", "),
                if dims.len() == 1 { "," } else { "" }
            ));
        }
    } else {
        let shown = if summarize { summarized(t)? } else { t.clone() };
        let values = shown.with_storage(|s, l| s.to_host(l))?;
        let mut strings: Vec<String> = match &values {
            HostBuffer::F32(v) => float_strings(&v.iter().map(|&x| x as f64).collect::<Vec<_>>()),
            HostBuffer::F64(v) => float_strings(v),
            // Each 16-bit value is exactly an f32, and PyTorch prints them alike.
            HostBuffer::F16(v) => float_strings(&v.iter().map(|x| x.to_f64()).collect::<Vec<_>>()),
            HostBuffer::BF16(v) => float_strings(&v.iter().map(|x| x.to_f64()).collect::<Vec<_>>()),
            HostBuffer::I64(v) => {
                let _ = Style::Int;
                v.iter().map(|x| x.to_string()).collect()
            }
            HostBuffer::Bool(v) => {
                let _ = Style::Bool;
                v.iter()
                    .map(|&x| {
                        if x {
                            "True".to_string()
                        } else {
                            "False".to_string()
                        }
                    })
                    .collect()
            }
        };
        let width = strings.iter().map(|s| s.len()).max().unwrap_or(0);
        for s in &mut strings {
            *s = format!("{s:>width$}");
        }
        out.push_str(&body(&strings, t.shape(), width, prefix.len(), summarize));
    }
    // PyTorch names every dtype but its defaults (float32, int64, bool).
    if t.dtype().is_half() || t.dtype() == crate::DType::F64 {
        out.push_str(&format!(", dtype={}", t.dtype().torch_name()));
    }
    if let Some(name) = t.grad_fn_name() {
        out.push_str(&format!(", grad_fn=<{name}>"));
    } else if t.requires_grad() {
        out.push_str(", requires_grad=True");
    }
    out.push(')');
    Ok(out)
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match render(self) {
            Ok(s) => f.write_str(&s),
            Err(e) => write!(f, "tensor(<unprintable: {e}>)"),
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::python_sci;

    #[test]
    fn scientific_like_python() {
        assert_eq!(python_sci(-6.4468e37), "-6.4468e+37");
        assert_eq!(python_sci(1.7825e-42), "1.7825e-42");
        assert_eq!(python_sci(0.0), "0.0000e+00");
    }
}
