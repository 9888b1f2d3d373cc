//! Bad inputs give an `Err` of the right kind whose message names the op and the shapes;
//! nothing panics.

mod common;

use wgrad::{s, DType, Error, Tensor};

fn t(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape).unwrap()
}

fn names(err: &Error, parts: &[&str]) {
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should mention {p:?}");
    }
}

#[test]
fn incompatible_broadcast() {
    let e = t(&[3, 2]).add(t(&[4])).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { op: "add", .. }));
    names(&e, &["add", "[3, 2]", "[4]"]);
    let e = Tensor::where_cond(&t(&[2]).gt_scalar(0).unwrap(), t(&[3]), t(&[3])).unwrap_err();
    names(&e, &["where", "[2]", "[3]"]);
    let e = t(&[2, 3]).expand([4, 3]).unwrap_err();
    names(&e, &["expand", "[2, 3]", "[4, 3]"]);
}

#[test]
fn dim_out_of_range() {
    let e = t(&[2, 3]).sum_dims([2], false).unwrap_err();
    assert!(matches!(
        e,
        Error::DimOutOfRange {
            op: "sum",
            dim: 2,
            ..
        }
    ));
    names(&e, &["sum", "[2, 3]"]);
    for e in [
        t(&[2, 3]).softmax(-3).unwrap_err(),
        t(&[2, 3]).transpose(0, 2).unwrap_err(),
        t(&[2, 3]).unsqueeze(4).unwrap_err(),
        t(&[2, 3]).cumsum(5).unwrap_err(),
        Tensor::cat(&[&t(&[2]), &t(&[2])], 1).unwrap_err(),
    ] {
        assert!(matches!(e, Error::DimOutOfRange { .. }), "{e}");
    }
}

#[test]
fn reshape_to_other_element_count() {
    let e = t(&[2, 3]).reshape([4, 2]).unwrap_err();
    assert!(matches!(e, Error::BadShape { op: "reshape", .. }));
    names(&e, &["reshape", "[2, 3]", "[4, 2]"]);
    assert!(t(&[2, 3]).reshape([-1, -1]).is_err());
    let e = t(&[3, 4]).t().unwrap().view([12]).unwrap_err();
    names(&e, &["view", "[12]"]);
}

#[test]
fn cat_of_mismatched_shapes() {
    let e = Tensor::cat(&[&t(&[2, 3]), &t(&[2, 4])], 0).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { op: "cat", .. }));
    names(&e, &["cat", "[2, 3]", "[2, 4]"]);
    let e = Tensor::stack(&[&t(&[2, 3]), &t(&[3, 2])], 0).unwrap_err();
    names(&e, &["stack", "[2, 3]", "[3, 2]"]);
    assert!(matches!(
        Tensor::cat(&[], 0).unwrap_err(),
        Error::InvalidArgument { .. }
    ));
}

#[test]
fn index_out_of_range() {
    let x = t(&[3, 4]);
    let e = x.select(0, 3).unwrap_err();
    assert!(matches!(
        e,
        Error::IndexOutOfRange {
            op: "select",
            index: 3,
            size: 3,
            ..
        }
    ));
    names(&e, &["select", "[3, 4]"]);
    assert!(matches!(
        x.i(s![.., -5]).unwrap_err(),
        Error::IndexOutOfRange { .. }
    ));
    let e = x
        .index_select(1, &Tensor::new([0, 4]).unwrap())
        .unwrap_err();
    assert!(matches!(
        e,
        Error::IndexOutOfRange {
            op: "index_select",
            index: 4,
            ..
        }
    ));
    let e = x
        .gather(1, &Tensor::new([[0], [1], [9]]).unwrap())
        .unwrap_err();
    assert!(matches!(
        e,
        Error::IndexOutOfRange {
            op: "gather",
            index: 9,
            ..
        }
    ));
    let e = x
        .scatter_add(0, &Tensor::new([[3, 0, 0, 0]]).unwrap(), &t(&[1, 4]))
        .unwrap_err();
    assert!(matches!(
        e,
        Error::IndexOutOfRange {
            op: "scatter_add",
            ..
        }
    ));
    assert!(matches!(
        x.narrow(1, 2, 3).unwrap_err(),
        Error::IndexOutOfRange { .. }
    ));
    assert!(matches!(
        x.i(s![0, 0, 0]).unwrap_err(),
        Error::BadShape { .. }
    ));
}

#[test]
fn mixed_dtypes_where_not_allowed() {
    let f = t(&[2, 2]);
    let i = Tensor::new([[1, 2], [3, 4]]).unwrap();
    let e = f.matmul(&i).unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { op: "matmul", .. }));
    names(&e, &["matmul", "F32", "I64", "[2, 2]"]);
    let e = Tensor::where_cond(&i, &f, &f).unwrap_err();
    assert!(matches!(
        e,
        Error::UnsupportedDType {
            op: "where",
            dtype: DType::I64,
            ..
        }
    ));
    let e = f.index_select(0, &Tensor::new([0.0]).unwrap()).unwrap_err();
    assert!(matches!(
        e,
        Error::UnsupportedDType {
            op: "index_select",
            ..
        }
    ));
    let e = i.add_(1.5).unwrap_err();
    assert!(matches!(e, Error::DTypeMismatch { op: "add_", .. }), "{e}");
    let e = f.masked_fill(&i, 0.0).unwrap_err();
    assert!(matches!(
        e,
        Error::UnsupportedDType {
            op: "masked_fill",
            ..
        }
    ));
    let b = f.gt_scalar(0).unwrap();
    assert!(matches!(
        b.sub(&b).unwrap_err(),
        Error::DTypeMismatch { op: "sub", .. }
    ));
    assert!(matches!(
        b.neg().unwrap_err(),
        Error::UnsupportedDType { op: "neg", .. }
    ));
    assert!(matches!(
        i.mean().unwrap_err(),
        Error::UnsupportedDType { op: "mean", .. }
    ));
    assert!(matches!(
        f.to_vec::<i64>().unwrap_err(),
        Error::UnsupportedDType { op: "to_vec", .. }
    ));
}

#[test]
fn item_of_many_elements() {
    let e = t(&[2, 3]).item::<f32>().unwrap_err();
    assert!(matches!(e, Error::NotAScalar { numel: 6, .. }));
    names(&e, &["item", "[2, 3]"]);
    assert_eq!(t(&[1, 1]).item::<f64>().unwrap(), 0.0);
}

#[test]
fn data_that_does_not_fit_the_shape() {
    let e = Tensor::from_vec(vec![1.0f32; 5], [2, 3]).unwrap_err();
    assert!(matches!(
        e,
        Error::DataLength {
            len: 5,
            numel: 6,
            ..
        }
    ));
    names(&e, &["[2, 3]"]);
    let ragged = vec![vec![1.0, 2.0], vec![3.0]];
    assert!(matches!(
        Tensor::new(ragged).unwrap_err(),
        Error::BadShape { .. }
    ));
}

#[test]
fn matmul_shapes() {
    let e = t(&[2, 3]).matmul(&t(&[4, 5])).unwrap_err();
    names(&e, &["matmul", "[2, 3]", "[4, 5]"]);
    let e = t(&[2, 2, 3]).matmul(&t(&[3, 3, 5])).unwrap_err();
    names(&e, &["matmul", "[2, 2, 3]", "[3, 3, 5]"]);
    assert!(t(&[3]).dot(&t(&[4])).is_err());
    assert!(t(&[3, 4]).mv(&t(&[3])).is_err());
    assert!(t(&[3]).mm(&t(&[3, 1])).is_err());
}

#[test]
fn bad_arguments() {
    assert!(matches!(
        Tensor::arange(0, 10, 0).unwrap_err(),
        Error::InvalidArgument { op: "arange", .. }
    ));
    assert!(Tensor::arange(10, 0, 1).is_err());
    assert!(matches!(
        t(&[4]).slice(0, None, None, 0).unwrap_err(),
        Error::InvalidArgument { op: "slice", .. }
    ));
    assert!(Tensor::randint(5, 5, [2]).is_err());
    assert!(t(&[2, 0]).max().is_err());
    assert!(t(&[2, 3]).permute([0, 0]).is_err());
    assert!(t(&[2, 3]).permute([0]).is_err());
    assert!(t(&[2, 3]).split(0, 0).is_err());
    assert!(t(&[2, 3]).vector_norm(-1.0, [0], false).is_err());
}

#[test]
fn autograd_misuse() {
    let x = Tensor::ones([3]).unwrap().requires_grad_(true).unwrap();
    let y = x.mul_scalar(2.0).unwrap();
    let e = y.backward().unwrap_err();
    assert!(matches!(e, Error::Autograd { op: "backward", .. }));
    names(&e, &["[3]"]);
    let e = x.add_(1.0).unwrap_err();
    assert!(matches!(e, Error::Autograd { op: "add_", .. }));
    names(&e, &["leaf"]);
    assert!(Tensor::new([1, 2]).unwrap().requires_grad_(true).is_err());
    assert!(y.clone().requires_grad_(false).is_err());
    assert!(y.backward_with(&Tensor::ones([4]).unwrap()).is_err());
    assert!(Tensor::ones([1]).unwrap().backward().is_err());
}

#[test]
fn empty_tensors_are_fine() {
    // Zero-size dims flow through every kind of op without panicking.
    let e = Tensor::zeros([0, 3]).unwrap();
    assert_eq!(e.sum().unwrap().item::<f64>().unwrap(), 0.0);
    assert_eq!(
        e.sum_dims([0], false).unwrap().to_vec::<f32>().unwrap(),
        vec![0.0; 3]
    );
    assert_eq!(
        Tensor::ones([2, 0])
            .unwrap()
            .matmul(&Tensor::ones([0, 2]).unwrap())
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![0.0; 4]
    );
    assert_eq!(e.t().unwrap().shape(), &[3, 0]);
    assert_eq!(e.to_string(), "tensor([], size=(0, 3))");
    assert_eq!(
        Tensor::cat(&[&e, &Tensor::ones([1, 3]).unwrap()], 0)
            .unwrap()
            .shape(),
        &[1, 3]
    );
}

#[test]
fn sizes_that_overflow_are_errors() {
    let e = Tensor::zeros([1usize << 40, 1 << 40]).unwrap_err();
    assert!(matches!(e, Error::BufferTooLarge { .. }), "{e}");
    assert!(Tensor::full([usize::MAX, 2], 1.0).is_err());
}

#[test]
fn results_too_large_for_memory_are_errors() {
    // A view may repeat one element 2^40 times, but an op that must write them all (4 TiB)
    // returns an Err instead of aborting the process.
    let huge = Tensor::ones([1]).unwrap().expand([1usize << 40]).unwrap();
    for result in [
        huge.add_scalar(1.0),
        huge.contiguous(),
        huge.exp(),
        huge.to_dtype(DType::I64),
        huge.lt_scalar(0.5),
    ] {
        let e = result.unwrap_err();
        assert!(
            matches!(e, Error::OutOfMemory { .. } | Error::BufferTooLarge { .. }),
            "{e}"
        );
    }
    // Every backend output goes through one allocation path: reductions, scans, index ops
    // and creation too, on every device.
    for dev in common::devices() {
        let one = |dtype| Tensor::zeros_on([1], (dtype, &dev)).unwrap();
        let huge = one(DType::F32).expand([1usize << 40]).unwrap();
        let rows = huge.reshape([1usize << 39, 2]).unwrap();
        let results = [
            huge.cumsum(0),
            rows.sum_dims([1], false),
            rows.argmax_dim(1, false),
            rows.gather(1, &one(DType::I64).expand([1usize << 39, 1]).unwrap()),
            huge.index_select(0, &one(DType::I64).expand([1usize << 38]).unwrap()),
            Tensor::zeros_on([1usize << 38], (DType::I64, &dev)),
            Tensor::arange_on(0i64, 1i64 << 40, 1, &dev),
            huge.mul_scalar(2.0),
            Tensor::where_cond(&one(DType::Bool), 1.0, &huge),
        ];
        for (i, result) in results.into_iter().enumerate() {
            let e = result.unwrap_err();
            assert!(
                matches!(e, Error::OutOfMemory { .. } | Error::BufferTooLarge { .. }),
                "case {i} on {dev}: {e}"
            );
        }
    }
    let wide = Tensor::ones([1usize << 20, 1]).unwrap();
    let e = wide.matmul(&wide.t().unwrap()).unwrap_err();
    names(&e, &["matmul", "bytes"]);
    // Element counts that overflow are refused when the view is made.
    let e = Tensor::ones([1, 1])
        .unwrap()
        .expand([1usize << 40, 1 << 40])
        .unwrap_err();
    assert!(matches!(e, Error::BufferTooLarge { .. }), "{e}");
}

#[test]
fn in_place_writes_into_an_expanded_view_are_refused() {
    // Every element of the view is the same memory: the result would depend on the order of
    // the writes (PyTorch refuses these too).
    let base = Tensor::new([1.0f32, 2.0]).unwrap();
    let wide = base.i(s![..1]).unwrap().expand([3]).unwrap();
    let e = wide.add_(1.0).unwrap_err();
    names(&e, &["add_", "share memory", "[3]"]);
    assert!(wide.fill_(0.0).is_err());
    assert!(wide.assign(s![..], 5.0).is_err());
    assert_eq!(base.to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    // A view without shared elements is still written in place.
    base.i(s![1..]).unwrap().add_(1.0).unwrap();
    assert_eq!(base.to_vec::<f32>().unwrap(), vec![1.0, 3.0]);
}
