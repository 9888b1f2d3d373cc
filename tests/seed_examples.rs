//! Every code example of the seed's sections 2.2 (data manipulation) and 2.3 (linear
//! algebra), reproducing the output printed in the notes, character for character.

use wgrad::{s, DType, Error, Tensor};

fn show(t: &Tensor) -> String {
    t.to_string()
}

#[test]
fn arange_numel_shape() {
    let x = Tensor::arange(1, 12, 2).unwrap();
    assert_eq!(show(&x), "tensor([ 1,  3,  5,  7,  9, 11])");
    assert_eq!(x.numel(), 6);
    assert_eq!(x.shape(), &[6]);
}

#[test]
fn reshape_to_three_by_two() {
    let x = Tensor::arange(1, 12, 2).unwrap();
    let big_x = x.reshape([3, 2]).unwrap();
    assert_eq!(
        show(&big_x),
        "tensor([[ 1,  3],\n        [ 5,  7],\n        [ 9, 11]])"
    );
}

fn cat_inputs() -> (Tensor, Tensor) {
    let x = Tensor::arange(0, 12, 1)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .reshape([3, 4])
        .unwrap();
    let y = Tensor::new([[2.0, 1., 4., 3.], [1., 2., 3., 4.], [4., 3., 2., 1.]]).unwrap();
    (x, y)
}

#[test]
fn cat_rows_and_columns() {
    let (x, y) = cat_inputs();
    assert_eq!(
        show(&Tensor::cat(&[&x, &y], 0).unwrap()),
        "tensor([[ 0.,  1.,  2.,  3.],\n        [ 4.,  5.,  6.,  7.],\n        [ 8.,  9., 10., 11.],\n        [ 2.,  1.,  4.,  3.],\n        [ 1.,  2.,  3.,  4.],\n        [ 4.,  3.,  2.,  1.]])"
    );
    assert_eq!(
        show(&Tensor::cat(&[&x, &y], 1).unwrap()),
        "tensor([[ 0.,  1.,  2.,  3.,  2.,  1.,  4.,  3.],\n        [ 4.,  5.,  6.,  7.,  1.,  2.,  3.,  4.],\n        [ 8.,  9., 10., 11.,  4.,  3.,  2.,  1.]])"
    );
}

#[test]
fn elementwise_product_and_power() {
    let x = Tensor::new([1.0, 2., 4., 8.]).unwrap();
    let y = Tensor::new([5, 4, 3, 2]).unwrap();
    assert_eq!(show(&(&x * &y)), "tensor([ 5.,  8., 12., 16.])");
    assert_eq!(show(&x.pow(&y).unwrap()), "tensor([ 1., 16., 64., 64.])");
}

#[test]
fn comparison_and_sum() {
    let (x, y) = cat_inputs();
    assert_eq!(
        show(&x.eq(&y).unwrap()),
        "tensor([[False,  True, False,  True],\n        [False, False, False, False],\n        [False, False, False, False]])"
    );
    assert_eq!(show(&x.sum().unwrap()), "tensor(66.)");
}

#[test]
fn broadcasting_same_rank() {
    // The notes' first line, `torch.arange(2).reshape((3,1))`, cannot work: 2 elements do not
    // fill a 3x1 shape, and wgrad says so.
    let err = Tensor::arange(0, 2, 1)
        .unwrap()
        .reshape([3, 1])
        .unwrap_err();
    assert!(matches!(err, Error::BadShape { .. }), "{err}");
    let a = Tensor::arange(0, 3, 1).unwrap().reshape([3, 1]).unwrap();
    let b = Tensor::arange(0, 6, 1).unwrap().reshape([3, 2]).unwrap();
    assert_eq!(
        show(&b),
        "tensor([[0, 1],\n        [2, 3],\n        [4, 5]])"
    );
    assert_eq!(
        show(&(&a + &b)),
        "tensor([[0, 1],\n        [3, 4],\n        [6, 7]])"
    );

    let a = Tensor::arange(0, 3, 1).unwrap().reshape([3, 1]).unwrap();
    let b = Tensor::arange(0, 2, 1).unwrap().reshape([1, 2]).unwrap();
    assert_eq!(show(&a), "tensor([[0],\n        [1],\n        [2]])");
    assert_eq!(show(&b), "tensor([[0, 1]])");
    assert_eq!(
        show(&(&a + &b)),
        "tensor([[0, 1],\n        [1, 2],\n        [2, 3]])"
    );
}

#[test]
fn broadcasting_different_rank() {
    let b = Tensor::arange(0, 6, 1).unwrap().reshape([3, 2]).unwrap();
    let a = Tensor::arange(0, 3, 1).unwrap();
    let err = (&a + &b).check().unwrap_err();
    assert!(matches!(err.root(), Error::ShapeMismatch { .. }));
    assert!(err.to_string().contains(file!()), "{err}");
    assert!(
        err.to_string().contains("[3]") && err.to_string().contains("[3, 2]"),
        "{err}"
    );
    let a = Tensor::arange(0, 2, 1).unwrap();
    assert_eq!(show(&a), "tensor([0, 1])");
    assert_eq!(
        show(&(&a + &b)),
        "tensor([[0, 2],\n        [2, 4],\n        [4, 6]])"
    );
}

#[test]
fn write_one_element() {
    let b = Tensor::arange(0, 12, 1).unwrap().reshape([3, 4]).unwrap();
    b.assign(s![1, 2], 111).unwrap();
    assert_eq!(show(&b), "tensor([[  0,   1,   2,   3],\n        [  4,   5, 111,   7],\n        [  8,   9,  10,  11]])");
}

#[test]
fn read_last_row_and_row_range() {
    let b = Tensor::arange(0, 12, 1).unwrap().reshape([3, 4]).unwrap();
    assert_eq!(
        show(&b),
        "tensor([[ 0,  1,  2,  3],\n        [ 4,  5,  6,  7],\n        [ 8,  9, 10, 11]])"
    );
    assert_eq!(show(&b.i(s![-1]).unwrap()), "tensor([ 8,  9, 10, 11])");
    assert_eq!(
        show(&b.i(s![1..3]).unwrap()),
        "tensor([[ 4,  5,  6,  7],\n        [ 8,  9, 10, 11]])"
    );
}

#[test]
fn write_row_range() {
    let b = Tensor::arange(0, 12, 1).unwrap().reshape([3, 4]).unwrap();
    b.assign(s![1..3, ..], 12).unwrap();
    assert_eq!(
        show(&b),
        "tensor([[ 0,  1,  2,  3],\n        [12, 12, 12, 12],\n        [12, 12, 12, 12]])"
    );
}

#[test]
fn sub_regions_with_steps() {
    let x = Tensor::arange(0.0, 20.0, 1.0)
        .unwrap()
        .reshape([4, 5])
        .unwrap();
    assert_eq!(x.i(s![1, 2]).unwrap().item::<f64>().unwrap(), 7.0);
    assert_eq!(
        show(&x.i(s![1, ..]).unwrap()),
        "tensor([5., 6., 7., 8., 9.])"
    );
    assert_eq!(
        show(&x.i(s![.., 2]).unwrap()),
        "tensor([ 2.,  7., 12., 17.])"
    );
    assert_eq!(
        show(&x.i(s![1..3, 1..]).unwrap()),
        "tensor([[ 6.,  7.,  8.,  9.],\n        [11., 12., 13., 14.]])"
    );
    assert_eq!(
        show(&x.i(s![..;3, ..;2]).unwrap()),
        "tensor([[ 0.,  2.,  4.],\n        [15., 17., 19.]])"
    );
}

#[test]
fn new_result_allocates() {
    let x = Tensor::ones([3]).unwrap();
    let mut y = Tensor::ones([3]).unwrap();
    let before = y.storage_id();
    y = &x + &y;
    assert_ne!(y.storage_id(), before);
}

#[test]
fn slice_assignment_is_in_place() {
    let a = Tensor::arange(0, 12, 1).unwrap().reshape([3, 4]).unwrap();
    let b = Tensor::arange(6.0, 12.0, 0.5)
        .unwrap()
        .reshape([3, 4])
        .unwrap();
    let c = Tensor::zeros_like(&a).unwrap();
    let (id, ptr, allocations) = (
        c.storage_id(),
        c.data_ptr(),
        wgrad::Device::Cpu.memory_stats().allocations,
    );
    let sum = &a + &b;
    let after_sum = wgrad::Device::Cpu.memory_stats().allocations;
    c.assign(s![..], &sum).unwrap();
    assert_eq!(
        (c.storage_id(), c.data_ptr()),
        (id, ptr),
        "c[:] = a + b keeps c's storage"
    );
    // Only `a + b` (and the int->float conversion of `a`) allocated; the write did not.
    assert!(after_sum > allocations);
    // a + b is float (6.0, 7.5, 9.0, ...); writing into the int64 c truncates, as PyTorch.
    assert_eq!(
        show(&c),
        "tensor([[ 6,  7,  9, 10],\n        [12, 13, 15, 16],\n        [18, 19, 21, 22]])"
    );
    // X += Y is in place too.
    let x = Tensor::ones([2, 2]).unwrap();
    let ptr = x.data_ptr();
    x.add_(Tensor::ones([2]).unwrap()).unwrap();
    assert_eq!(
        (x.data_ptr(), x.to_vec::<f32>().unwrap()),
        (ptr, vec![2.0; 4])
    );
}

#[test]
fn to_rust_data_and_back() {
    let a = Tensor::arange(0, 12, 1).unwrap().reshape([3, 4]).unwrap();
    let x: Vec<Vec<i64>> = a.to_vec2().unwrap();
    let y = Tensor::new(x.clone()).unwrap();
    assert_eq!(y.to_vec2::<i64>().unwrap(), x);
}

#[test]
fn one_element_to_scalar() {
    let a = Tensor::new([3.5]).unwrap();
    assert_eq!(show(&a), "tensor([3.5000])");
    let v = a.item::<wgrad::Scalar>().unwrap();
    assert_eq!((v.to_f64(), v.to_i64()), (3.5, 3));
}

#[test]
fn randperm_reorders_rows() {
    wgrad::manual_seed(0);
    let idx = Tensor::randperm(4).unwrap();
    let mut sorted = idx.to_vec::<i64>().unwrap();
    sorted.sort();
    assert_eq!(sorted, vec![0, 1, 2, 3]);
    let t = Tensor::arange(0.0, 12.0, 1.0)
        .unwrap()
        .reshape([4, 3])
        .unwrap();
    let shuffled = t.index_select(0, &idx).unwrap();
    for (row, &i) in idx.to_vec::<i64>().unwrap().iter().enumerate() {
        assert_eq!(
            shuffled.i(s![row]).unwrap().to_vec::<f32>().unwrap(),
            t.i(s![i]).unwrap().to_vec::<f32>().unwrap()
        );
    }
    wgrad::manual_seed(0);
    assert_eq!(
        Tensor::randperm(4).unwrap().to_vec::<i64>().unwrap(),
        idx.to_vec::<i64>().unwrap()
    );
}

#[test]
fn scalar_arithmetic() {
    let x = Tensor::new([3.0]).unwrap();
    let y = Tensor::new([2.0]).unwrap();
    let out = [(&x + &y), (&x * &y), (&x / &y), x.pow(&y).unwrap()];
    let printed: Vec<String> = out.iter().map(show).collect();
    assert_eq!(
        printed.join(" "),
        "tensor([5.]) tensor([6.]) tensor([1.5000]) tensor([9.])"
    );
}

#[test]
fn vector_length_and_shape() {
    let x = Tensor::arange(0, 4, 1).unwrap();
    assert_eq!(show(&x), "tensor([0, 1, 2, 3])");
    assert_eq!(x.size(0).unwrap(), 4);
    assert_eq!(x.shape(), &[4]);
}

#[test]
fn matrix_and_transpose() {
    let a = Tensor::arange(0, 20, 1).unwrap().reshape([5, 4]).unwrap();
    assert_eq!(
        show(&a),
        "tensor([[ 0,  1,  2,  3],\n        [ 4,  5,  6,  7],\n        [ 8,  9, 10, 11],\n        [12, 13, 14, 15],\n        [16, 17, 18, 19]])"
    );
    assert_eq!(
        show(&a.t().unwrap()),
        "tensor([[ 0,  4,  8, 12, 16],\n        [ 1,  5,  9, 13, 17],\n        [ 2,  6, 10, 14, 18],\n        [ 3,  7, 11, 15, 19]])"
    );
}

#[test]
fn symmetric_matrix() {
    let b = Tensor::new([[1, 2, 3], [2, 0, 4], [3, 4, 5]]).unwrap();
    assert_eq!(
        show(&b.eq(b.t().unwrap()).unwrap()),
        "tensor([[True, True, True],\n        [True, True, True],\n        [True, True, True]])"
    );
}

#[test]
fn three_dimensional_tensor() {
    let x = Tensor::arange(0, 24, 1)
        .unwrap()
        .reshape([2, 3, 4])
        .unwrap();
    assert_eq!(
        show(&x),
        "tensor([[[ 0,  1,  2,  3],\n         [ 4,  5,  6,  7],\n         [ 8,  9, 10, 11]],\n\n        [[12, 13, 14, 15],\n         [16, 17, 18, 19],\n         [20, 21, 22, 23]]])"
    );
}

fn float_a() -> Tensor {
    Tensor::arange(0.0, 20.0, 1.0)
        .unwrap()
        .reshape([5, 4])
        .unwrap()
}

#[test]
fn clone_and_add() {
    let a = float_a();
    let b = a.deep_clone().unwrap();
    assert_ne!(a.storage_id(), b.storage_id());
    assert_eq!(
        show(&a),
        "tensor([[ 0.,  1.,  2.,  3.],\n        [ 4.,  5.,  6.,  7.],\n        [ 8.,  9., 10., 11.],\n        [12., 13., 14., 15.],\n        [16., 17., 18., 19.]])"
    );
    assert_eq!(
        show(&(&a + &b)),
        "tensor([[ 0.,  2.,  4.,  6.],\n        [ 8., 10., 12., 14.],\n        [16., 18., 20., 22.],\n        [24., 26., 28., 30.],\n        [32., 34., 36., 38.]])"
    );
}

#[test]
fn hadamard_product() {
    let a = float_a();
    let b = a.deep_clone().unwrap();
    assert_eq!(
        show(&(&a * &b)),
        "tensor([[  0.,   1.,   4.,   9.],\n        [ 16.,  25.,  36.,  49.],\n        [ 64.,  81., 100., 121.],\n        [144., 169., 196., 225.],\n        [256., 289., 324., 361.]])"
    );
}

#[test]
fn scalar_plus_tensor() {
    let a = 2;
    let x = Tensor::arange(0, 24, 1)
        .unwrap()
        .reshape([2, 3, 4])
        .unwrap();
    assert_eq!(
        show(&(a + &x)),
        "tensor([[[ 2,  3,  4,  5],\n         [ 6,  7,  8,  9],\n         [10, 11, 12, 13]],\n\n        [[14, 15, 16, 17],\n         [18, 19, 20, 21],\n         [22, 23, 24, 25]]])"
    );
    assert_eq!((a * &x).shape(), &[2, 3, 4]);
}

#[test]
fn sum_along_axes_of_matrix() {
    let a = float_a();
    let s0 = a.sum_dims([0], false).unwrap();
    assert_eq!(
        (show(&s0), s0.shape().to_vec()),
        ("tensor([40., 45., 50., 55.])".to_string(), vec![4])
    );
    let s1 = a.sum_dims([1], false).unwrap();
    assert_eq!(
        (show(&s1), s1.shape().to_vec()),
        ("tensor([ 6., 22., 38., 54., 70.])".to_string(), vec![5])
    );
    assert_eq!(show(&a.sum_dims([0, 1], false).unwrap()), "tensor(190.)");
    assert_eq!(show(&a.sum().unwrap()), "tensor(190.)");
}

#[test]
fn sum_along_axes_of_3d_tensor() {
    let a = Tensor::arange(0, 24, 1)
        .unwrap()
        .reshape([2, 3, 4])
        .unwrap();
    let s0 = a.sum_dims([0], false).unwrap();
    assert_eq!(
        show(&s0),
        "tensor([[12, 14, 16, 18],\n        [20, 22, 24, 26],\n        [28, 30, 32, 34]])"
    );
    assert_eq!(s0.shape(), &[3, 4]);
    let s1 = a.sum_dims([1], false).unwrap();
    assert_eq!(
        (show(&s1), s1.shape().to_vec()),
        (
            "tensor([[12, 15, 18, 21],\n        [48, 51, 54, 57]])".to_string(),
            vec![2, 4]
        )
    );
    let s2 = a.sum_dims([2], false).unwrap();
    assert_eq!(
        (show(&s2), s2.shape().to_vec()),
        (
            "tensor([[ 6, 22, 38],\n        [54, 70, 86]])".to_string(),
            vec![2, 3]
        )
    );
    let s12 = a.sum_dims([1, 2], false).unwrap();
    assert_eq!(
        (show(&s12), s12.shape().to_vec()),
        ("tensor([ 66, 210])".to_string(), vec![2])
    );
}

#[test]
fn mean_and_mean_along_axis() {
    let a = Tensor::arange(0.0, 20.0, 1.0)
        .unwrap()
        .reshape([4, 5])
        .unwrap();
    assert_eq!(show(&a.mean().unwrap()), "tensor(9.5000)");
    assert_eq!(
        show(&a.sum().unwrap().div_scalar(a.numel() as f64).unwrap()),
        "tensor(9.5000)"
    );
    let expected = "tensor([ 7.5000,  8.5000,  9.5000, 10.5000, 11.5000])";
    assert_eq!(show(&a.mean_dims([0], false).unwrap()), expected);
    assert_eq!(
        show(
            &a.sum_dims([0], false)
                .unwrap()
                .div_scalar(a.shape()[0] as f64)
                .unwrap()
        ),
        expected
    );
}

#[test]
fn keepdim_and_broadcast_division() {
    let a = Tensor::arange(0.0, 20.0, 1.0)
        .unwrap()
        .reshape([4, 5])
        .unwrap();
    let sum_a = a.sum_dims([1], true).unwrap();
    assert_eq!(
        show(&sum_a),
        "tensor([[10.],\n        [35.],\n        [60.],\n        [85.]])"
    );
    assert_eq!(
        show(&(&a / &sum_a)),
        "tensor([[0.0000, 0.1000, 0.2000, 0.3000, 0.4000],\n        [0.1429, 0.1714, 0.2000, 0.2286, 0.2571],\n        [0.1667, 0.1833, 0.2000, 0.2167, 0.2333],\n        [0.1765, 0.1882, 0.2000, 0.2118, 0.2235]])"
    );
}

#[test]
fn cumulative_sum() {
    let a = Tensor::arange(0.0, 20.0, 1.0)
        .unwrap()
        .reshape([4, 5])
        .unwrap();
    assert_eq!(
        show(&a),
        "tensor([[ 0.,  1.,  2.,  3.,  4.],\n        [ 5.,  6.,  7.,  8.,  9.],\n        [10., 11., 12., 13., 14.],\n        [15., 16., 17., 18., 19.]])"
    );
    assert_eq!(
        show(&a.cumsum(0).unwrap()),
        "tensor([[ 0.,  1.,  2.,  3.,  4.],\n        [ 5.,  7.,  9., 11., 13.],\n        [15., 18., 21., 24., 27.],\n        [30., 34., 38., 42., 46.]])"
    );
}

#[test]
fn dot_product() {
    let x = Tensor::arange(0, 4, 1)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap();
    let y = Tensor::ones([4]).unwrap();
    let printed = [show(&x), show(&y), show(&x.dot(&y).unwrap())];
    assert_eq!(
        printed,
        [
            "tensor([0., 1., 2., 3.])",
            "tensor([1., 1., 1., 1.])",
            "tensor(6.)"
        ]
    );
    assert_eq!(show(&(&x * &y).sum().unwrap()), "tensor(6.)");
}

#[test]
fn matrix_vector_product() {
    let a = Tensor::arange(0.0, 20.0, 1.0)
        .unwrap()
        .reshape([4, 5])
        .unwrap();
    let x = Tensor::arange(0.0, 5.0, 1.0).unwrap();
    assert_eq!(show(&x), "tensor([0., 1., 2., 3., 4.])");
    let v = a.mv(&x).unwrap();
    assert_eq!(
        (show(&v), v.shape().to_vec()),
        ("tensor([ 30.,  80., 130., 180.])".to_string(), vec![4])
    );
}

#[test]
fn matrix_matrix_product() {
    let a = Tensor::arange(0.0, 20.0, 1.0)
        .unwrap()
        .reshape([4, 5])
        .unwrap();
    let b = Tensor::arange(0.0, 20.0, 1.0)
        .unwrap()
        .reshape([5, 4])
        .unwrap();
    let expected = "tensor([[120., 130., 140., 150.],\n        [320., 355., 390., 425.],\n        [520., 580., 640., 700.],\n        [720., 805., 890., 975.]])";
    assert_eq!(show(&a.mm(&b).unwrap()), expected);
    assert_eq!(show(&a.matmul(&b).unwrap()), expected);
}

#[test]
fn vector_norms() {
    let x = Tensor::arange(0.0, 3.0, 1.0).unwrap();
    assert_eq!(show(&x.norm().unwrap()), "tensor(2.2361)");
    assert_eq!(show(&x.abs().unwrap().sum().unwrap()), "tensor(3.)");
    assert_eq!(show(&x.vector_norm(1.0, [0], false).unwrap()), "tensor(3.)");
}

#[test]
fn matrix_frobenius_norm() {
    assert_eq!(
        show(&Tensor::ones([4, 9]).unwrap().norm().unwrap()),
        "tensor(6.)"
    );
}
