//! Operator expressions without a `?` per operator: a failed operator's tensor carries its
//! error (with the operator's source line) to the next call that returns a `Result`, on
//! every op, and is never readable as data.

mod common;

use wgrad::{s, Device, Error, Tensor};

/// A tensor made by a failing operator (shapes [2, 3] and [4] do not broadcast), and the
/// line that failed.
fn failed_on(dev: &Device) -> (Tensor, u32) {
    let a = Tensor::ones_on([2, 3], (wgrad::DType::F32, dev)).unwrap();
    let b = Tensor::ones_on([4], (wgrad::DType::F32, dev)).unwrap();
    let line = line!() + 1;
    let y = 2.0 * &a + &b;
    (y, line)
}

/// Why `r` is not the error of the expression made at `line` (None when it is).
fn not_original(what: &str, r: wgrad::Result<impl std::fmt::Debug>, line: u32) -> Option<String> {
    let e = match r {
        Ok(v) => return Some(format!("{what}: a failed expression gave a value: {v:?}")),
        Err(e) => e,
    };
    let at_line = format!("{}:{line}:13", file!());
    match &e {
        Error::InExpression { at, error }
            if matches!(**error, Error::ShapeMismatch { op: "add", .. }) && *at == at_line =>
        {
            None
        }
        _ => Some(format!("{what}: not the expression's error: {e}")),
    }
}

#[test]
fn a_long_expression_reports_the_failing_operator_and_its_line() {
    for dev in common::devices() {
        let z = Tensor::rand_on([4, 3], &dev).unwrap();
        let h = Tensor::rand_on([4, 3], &dev).unwrap();
        let h_tilde = Tensor::rand_on([4, 5], &dev).unwrap();
        // The GRU update, one line: the last `*` has shapes that do not broadcast.
        let line = line!() + 1;
        let h_new = &z * &h + (1.0 - &z) * &h_tilde;
        let e = h_new.tanh().unwrap_err();
        let Error::InExpression { at, error } = &e else {
            panic!("{e}")
        };
        assert_eq!(at, &format!("{}:{line}:31", file!()), "{e}");
        match &**error {
            Error::ShapeMismatch { op, lhs, rhs, .. } => {
                assert_eq!((*op, &lhs[..], &rhs[..]), ("mul", &[4, 3][..], &[4, 5][..]))
            }
            other => panic!("{other}"),
        }
        let text = e.to_string();
        assert!(
            text.contains("mul") && text.contains("[4, 5]") && text.contains(file!()),
            "{text}"
        );
        // The same expression with matching shapes is a value, equal to the method calls.
        let h_tilde = Tensor::rand_on([4, 3], &dev).unwrap();
        let fused = (&z * &h + (1.0 - &z) * &h_tilde).check().unwrap();
        let spelled = z
            .mul(&h)
            .unwrap()
            .add(
                z.neg()
                    .unwrap()
                    .add_scalar(1.0)
                    .unwrap()
                    .mul(&h_tilde)
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(
            fused.to_vec::<f32>().unwrap(),
            spelled.to_vec::<f32>().unwrap()
        );
    }
}

#[test]
fn every_op_on_a_failed_tensor_returns_its_error() {
    for dev in common::devices() {
        let (y, line) = failed_on(&dev);
        assert!(y.error().is_some());
        let ok = Tensor::ones_on([2, 3], (wgrad::DType::F32, &dev)).unwrap();
        let idx = Tensor::zeros_on([1], (wgrad::DType::I64, &dev)).unwrap();
        let mask = ok.gt_scalar(0.0).unwrap();
        let wrong = std::cell::RefCell::new(Vec::new());
        let check = |what: &str, r: wgrad::Result<Tensor>| {
            wrong.borrow_mut().extend(not_original(what, r, line))
        };
        let check_unit = |what: &str, r: wgrad::Result<()>| {
            wrong.borrow_mut().extend(not_original(what, r, line))
        };
        check("check", y.clone().check());
        check("unary", y.exp());
        check("relu", y.relu());
        check("binary", y.add(&ok));
        check("binary rhs", ok.add(&y));
        check("scalar", y.mul_scalar(2.0));
        check("operator", (&ok * &y).check());
        check("compare", y.gt_scalar(0.0));
        check("where", Tensor::where_cond(&mask, &y, 0.0));
        check("where cond", Tensor::where_cond(&y, &ok, 0.0));
        check("masked_fill", y.masked_fill(&mask, 1.0));
        check("clamp", y.clamp(0.0, 1.0));
        check("sum", y.sum());
        check("sum_dims", y.sum_dims([0], false));
        check("mean", y.mean());
        check("max", y.max());
        check("argmax", y.argmax());
        check("softmax", y.softmax(0));
        check("log_softmax", y.log_softmax(-1));
        check("logsumexp", y.logsumexp([0], false));
        check("cumsum", y.cumsum(0));
        check("matmul", y.matmul(&ok));
        check("matmul rhs", ok.t().unwrap().matmul(&y));
        check("reshape", y.reshape([2, 3]));
        check("view", y.view([6]));
        check("flatten", y.flatten(0, -1));
        check("unsqueeze", y.unsqueeze(0));
        check("expand", y.expand([2, 3]));
        check("transpose", y.transpose(0, 1));
        check("permute", y.permute([1, 0]));
        check("narrow", y.narrow(0, 0, 1));
        check("index", y.i(s![0]));
        check("index_select", y.index_select(0, &idx));
        check("gather", y.gather(0, &idx));
        check("cat", Tensor::cat(&[&ok, &y], 0));
        check("stack", Tensor::stack(&[&y, &ok], 0));
        check("to_dtype", y.to_dtype(wgrad::DType::I64));
        check("to_device", y.to_device(&Device::Cpu));
        check("contiguous", y.contiguous());
        check("deep_clone", y.deep_clone());
        check("detach", y.detach().check());
        check("norm", y.norm());
        check("requires_grad_", y.clone().requires_grad_(true));
        check_unit("to_vec", y.to_vec::<f32>().map(drop));
        check_unit("item", y.item::<f32>().map(drop));
        check_unit("backward", y.backward());
        check_unit("in-place into", ok.add_(&y).map(drop));
        check_unit("copy_", ok.copy_(&y).map(drop));
        check_unit("in-place on", y.add_(1.0).map(drop));
        check_unit("fill_", y.fill_(1.0).map(drop));
        let wrong = wrong.into_inner();
        assert!(wrong.is_empty(), "on {dev}:\n{}", wrong.join("\n"));
        assert!(y.to_string().contains("add"), "{y}");
    }
}
