//! The GPU backend against the CPU backend on random inputs: non-contiguous views, every
//! broadcast pattern, sizes across workgroup boundaries, odd matmul shapes, reductions along
//! every dim, index ops, in-place writes, the random stream, and backward passes. Each test
//! body runs on every GPU found (lavapipe in CI); without one it says so, and with
//! `WGRAD_REQUIRE_GPU=1` it fails.

// `&[x.clone()]` reads as "these inputs" in the tables below.
#![allow(clippy::cloned_ref_to_slice_refs)]

mod common;

use wgrad::{s, DType, Device, Error, Generator, Result, Tensor};

/// The tests of this file share one GPU and some assert on its counters: each holds this
/// lock while it runs, so they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn gpus() -> Vec<Device> {
    common::devices()
        .into_iter()
        .filter(|d| !d.is_cpu())
        .collect()
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` on the CPU and on each GPU with the same inputs and compare the results.
fn agree(name: &str, inputs: &[Tensor], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let expected = f(inputs).unwrap_or_else(|e| panic!("{name} on cpu: {e}"));
    for dev in gpus() {
        let moved: Vec<Tensor> = inputs.iter().map(|t| t.to_device(&dev).unwrap()).collect();
        let got = f(&moved).unwrap_or_else(|e| panic!("{name} on {dev}: {e}"));
        assert_eq!(got.device(), &dev, "{name}: result on the wrong device");
        assert_eq!(got.shape(), expected.shape(), "{name}: shape");
        assert_eq!(got.dtype(), expected.dtype(), "{name}: dtype");
        let got = got.to_device(&Device::Cpu).unwrap();
        match expected.dtype() {
            DType::F32 => {
                let e: Vec<f64> = expected
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|&x| x as f64)
                    .collect();
                common::assert_close(
                    &got.to_vec::<f32>().unwrap(),
                    &e,
                    1e-4,
                    1e-4,
                    &format!("{name} on {dev}"),
                );
            }
            DType::I64 => assert_eq!(
                got.to_vec::<i64>().unwrap(),
                expected.to_vec::<i64>().unwrap(),
                "{name} on {dev}"
            ),
            DType::Bool => assert_eq!(
                got.to_vec::<bool>().unwrap(),
                expected.to_vec::<bool>().unwrap(),
                "{name} on {dev}"
            ),
            DType::F16 | DType::BF16 | DType::F64 => assert_eq!(
                got.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(),
                expected
                    .to_dtype(DType::F32)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap(),
                "{name} on {dev}"
            ),
        }
    }
}

fn randn(g: &mut Generator, shape: &[usize]) -> Tensor {
    Tensor::randn_with(shape.to_vec(), g).unwrap()
}

#[test]
fn elementwise_over_views_and_broadcasts() {
    let _serial = serial();
    let mut g = Generator::new(1);
    let x = randn(&mut g, &[4, 6]);
    let y = randn(&mut g, &[6]);
    let col = randn(&mut g, &[4, 1]);
    let z = randn(&mut g, &[2, 1, 6]);
    agree("add broadcast row", &[x.clone(), y.clone()], |t| {
        t[0].add(&t[1])
    });
    agree("mul outer", &[col.clone(), y.clone()], |t| t[0].mul(&t[1]));
    agree("sub rank 3", &[z.clone(), x.clone()], |t| t[0].sub(&t[1]));
    agree("div transposed", &[x.clone()], |t| {
        t[0].t()?.div(&t[0].t()?.abs()?.add_scalar(1.0)?)
    });
    agree("pow negative base", &[x.clone()], |t| {
        t[0].pow_scalar(3.0)?.add(&t[0].abs()?.pow_scalar(0.5)?)
    });
    agree("slice step", &[x.clone()], |t| {
        t[0].i(s![1..;2, ..;3])?.exp()
    });
    agree("expanded", &[col.clone()], |t| t[0].expand([4, 5])?.sin());
    agree("unary chain", &[x.clone()], |t| {
        t[0].tanh()?
            .add(&t[0].sigmoid()?)?
            .add(&t[0].relu()?)?
            .add(&t[0].cos()?)
    });
    agree("log sqrt", &[x.clone()], |t| {
        t[0].abs()?
            .add_scalar(0.1)?
            .log()?
            .add(&t[0].abs()?.sqrt()?)
    });
    agree("maximum minimum", &[x.clone(), y.clone()], |t| {
        t[0].maximum(&t[1])?.add(&t[0].minimum(&t[1])?)
    });
    agree("compare", &[x.clone(), y.clone()], |t| t[0].gt(&t[1]));
    agree("logical", &[x.clone(), y.clone()], |t| {
        t[0].gt_scalar(0.0)?.logical_xor(&t[1].lt_scalar(0.5)?)
    });
    agree("where", &[x.clone(), y.clone()], |t| {
        Tensor::where_cond(&t[0].gt_scalar(0.0)?, &t[0], &t[1])
    });
    agree("clamp", &[x.clone()], |t| t[0].clamp(-0.5, 0.5));
    agree("cast", &[x.clone()], |t| {
        t[0].mul_scalar(3.0)?.to_dtype(DType::I64)
    });
    agree("integer ops", &[Tensor::arange(-7, 8, 1).unwrap()], |t| {
        t[0].mul_scalar(3)?
            .add(&t[0].abs()?)?
            .div_scalar(2)?
            .to_dtype(DType::F32)
    });
    agree(
        "floor division and pow of ints",
        &[Tensor::arange(-6, 6, 1).unwrap()],
        |t| t[0].square()?.maximum(&t[0].neg()?),
    );
}

#[test]
fn sizes_across_workgroup_boundaries() {
    let _serial = serial();
    let mut g = Generator::new(2);
    for n in [1usize, 255, 256, 257, 1_000_000] {
        let x = randn(&mut g, &[n]);
        let y = randn(&mut g, &[n]);
        agree(&format!("add {n}"), &[x.clone(), y.clone()], |t| {
            t[0].add(&t[1])
        });
        agree(&format!("sum {n}"), &[x.clone()], |t| t[0].sum());
        agree(&format!("max {n}"), &[x.clone()], |t| t[0].max());
        agree(&format!("argmin {n}"), &[x.clone()], |t| t[0].argmin());
    }
}

#[test]
fn reductions_along_every_dim() {
    let _serial = serial();
    for dev in gpus() {
        if let Device::Gpu(g) = &dev {
            eprintln!(
                "{dev}: reductions use {}",
                if g.uses_subgroups() {
                    "subgroup operations"
                } else {
                    "the workgroup tree"
                }
            );
        }
    }
    let mut g = Generator::new(3);
    let x = randn(&mut g, &[3, 5, 7]);
    for dims in [vec![0isize], vec![1], vec![2], vec![0, 2], vec![0, 1, 2]] {
        for keepdim in [false, true] {
            agree(&format!("sum {dims:?}"), &[x.clone()], |t| {
                t[0].sum_dims(&dims, keepdim)
            });
            agree(&format!("amax {dims:?}"), &[x.clone()], |t| {
                t[0].max_dims(&dims, keepdim)
            });
            agree(&format!("amin {dims:?}"), &[x.clone()], |t| {
                t[0].min_dims(&dims, keepdim)
            });
            agree(&format!("prod {dims:?}"), &[x.clone()], |t| {
                t[0].div_scalar(2.0)?
                    .add_scalar(1.0)?
                    .prod_dims(&dims, keepdim)
            });
        }
    }
    for d in 0..3 {
        agree(&format!("argmax {d}"), &[x.clone()], |t| {
            t[0].argmax_dim(d, false)
        });
        agree(&format!("max_dim {d}"), &[x.clone()], |t| {
            Ok(t[0].max_dim(d, true)?.0)
        });
        agree(&format!("cumsum {d}"), &[x.clone()], |t| t[0].cumsum(d));
        agree(&format!("softmax {d}"), &[x.clone()], |t| t[0].softmax(d));
        agree(&format!("log_softmax {d}"), &[x.clone()], |t| {
            t[0].log_softmax(d)
        });
        agree(&format!("logsumexp {d}"), &[x.clone()], |t| {
            t[0].logsumexp([d], false)
        });
    }
    agree("sum of transposed view", &[x.clone()], |t| {
        t[0].permute([2, 0, 1])?.sum_dims([1], false)
    });
    agree("norms", &[x.clone()], |t| {
        t[0].norm()?.add(&t[0].vector_norm(1.0, [1], false)?.sum()?)
    });
    agree(
        "int sum and cumsum",
        &[Tensor::arange(0, 24, 1).unwrap().reshape([4, 6]).unwrap()],
        |t| t[0].cumsum(1)?.sum_dims([0], false),
    );
    agree("bool sum", &[x.clone()], |t| t[0].gt_scalar(0.0)?.sum());
    agree("long cumsum", &[randn(&mut g, &[3, 1000])], |t| {
        t[0].cumsum(1)
    });
}

#[test]
fn matmul_shapes() {
    let _serial = serial();
    let mut g = Generator::new(4);
    let cases: &[(&[usize], &[usize])] = &[
        (&[257, 513], &[513, 129]),
        (&[1, 7], &[7, 1]),
        (&[17, 33], &[33, 9]),
        (&[2, 3, 4], &[4, 5]),
        (&[2, 1, 3, 4], &[3, 4, 2]),
        (&[4], &[2, 4, 3]),
        (&[3, 4], &[4]),
        (&[5], &[5]),
        // Shapes for the vec4 kernel (rows of a multiple of 4) with ragged tile edges.
        (&[130, 64], &[64, 132]),
        (&[256, 128], &[128, 256]),
        (&[3, 40, 36], &[3, 36, 20]),
        (&[2, 1, 9, 12], &[5, 12, 8]),
    ];
    for (a, b) in cases {
        let x = randn(&mut g, a);
        let y = randn(&mut g, b);
        agree(&format!("matmul {a:?} x {b:?}"), &[x, y], |t| {
            t[0].matmul(&t[1])
        });
    }
    let x = randn(&mut g, &[40, 30]);
    let y = randn(&mut g, &[50, 40]);
    agree("matmul of transposed views", &[x, y], |t| {
        t[0].t()?.matmul(&t[1].t()?)
    });
    // Transposed operands the vec4 kernel reads column by column (one or both, with an
    // offset) and ones it reads row by row.
    let big = randn(&mut g, &[136, 140]);
    let w = randn(&mut g, &[44, 136]);
    agree("x.T @ w.T, x.T narrowed", &[big, w], |t| {
        t[0].t()?.narrow(0, 4, 68)?.matmul(&t[1].t()?)
    });
    // Products with transposed operands (read in place by the vec4 kernel) that are large
    // enough for it.
    let x = randn(&mut g, &[96, 256]);
    let w = randn(&mut g, &[128, 256]);
    let grad = randn(&mut g, &[96, 128]);
    let xb = randn(&mut g, &[4, 64, 128]);
    let wb = randn(&mut g, &[4, 96, 128]);
    agree("x @ w.T", &[x.clone(), w.clone()], |t| {
        t[0].matmul(&t[1].t()?)
    });
    agree("g.T @ x", &[grad, x], |t| t[0].t()?.matmul(&t[1]));
    agree("batched x @ w.T", &[xb.clone(), wb.clone()], |t| {
        t[0].matmul(&t[1].transpose(-1, -2)?)
    });
    agree("broadcast x @ w.T", &[xb, wb], |t| {
        t[0].matmul(&t[1].i(s![0])?.t()?)
    });
    agree(
        "int matmul",
        &[Tensor::arange(0, 12, 1).unwrap().reshape([3, 4]).unwrap()],
        |t| t[0].matmul(&t[0].t()?),
    );
}

/// A transposed operand of a product is read in place, row by row or column by column:
/// `x @ w.T`, `g.T @ x` and `x.T @ w.T` are one kernel each, without a copy first.
#[test]
fn transposed_matmul_operands_are_not_copied() {
    let _serial = serial();
    let mut g = Generator::new(14);
    for dev in gpus() {
        let Device::Gpu(gpu) = &dev else { continue };
        let a = randn(&mut g, &[96, 256]).to_device(&dev).unwrap();
        let b = randn(&mut g, &[128, 256]).to_device(&dev).unwrap();
        let c = randn(&mut g, &[96, 128]).to_device(&dev).unwrap();
        let d = randn(&mut g, &[64, 96]).to_device(&dev).unwrap();
        let products: [(&str, &dyn Fn() -> Result<Tensor>); 3] = [
            ("x @ w.T", &|| a.matmul(&b.t()?)),
            ("g.T @ x", &|| c.t()?.matmul(&a)),
            ("x.T @ w.T", &|| a.t()?.matmul(&d.t()?)),
        ];
        for (name, product) in products {
            dev.synchronize().unwrap();
            let before = gpu.stats().dispatches;
            let y = product().unwrap();
            // The product is computed when needed (here, at the synchronization).
            dev.synchronize().unwrap();
            assert_eq!(gpu.stats().dispatches - before, 1, "{name} on {dev}");
            drop(y);
        }
    }
}

#[test]
fn joining_and_indexing() {
    let _serial = serial();
    let mut g = Generator::new(5);
    let x = randn(&mut g, &[4, 5]);
    let y = randn(&mut g, &[2, 5]);
    agree("cat", &[x.clone(), y.clone()], |t| {
        Tensor::cat(&[&t[0], &t[1]], 0)
    });
    agree("stack", &[x.clone()], |t| {
        Tensor::stack(&[&t[0], &t[0].neg()?], 2)
    });
    agree("split", &[x.clone()], |t| {
        t[0].split(2, 1)?.remove(2).contiguous()
    });
    agree(
        "index_select",
        &[x.clone(), Tensor::new([3, 0, 2, 3]).unwrap()],
        |t| t[0].index_select(0, &t[1]),
    );
    agree(
        "gather",
        &[
            x.clone(),
            Tensor::new([[0, 4], [1, 1], [2, 0], [3, 3]]).unwrap(),
        ],
        |t| t[0].gather(1, &t[1]),
    );
    agree(
        "scatter_add",
        &[
            x.clone(),
            Tensor::new([[0, 1, 2, 3, 0], [0, 0, 0, 1, 1]]).unwrap(),
            y.clone(),
        ],
        |t| t[0].scatter_add(0, &t[1], &t[2]),
    );
    agree("masked_fill", &[x.clone()], |t| {
        t[0].masked_fill(&t[0].lt_scalar(0.0)?, -1.0)
    });
}

#[test]
fn in_place_writes_keep_the_buffer() {
    let _serial = serial();
    for dev in gpus() {
        let b = Tensor::arange(0, 12, 1)
            .unwrap()
            .reshape([3, 4])
            .unwrap()
            .to_device(&dev)
            .unwrap();
        let (id, ptr) = (b.storage_id(), b.data_ptr());
        b.assign(s![1..3, ..], 12).unwrap();
        b.assign(
            s![0, 1..;2],
            Tensor::new([7, 9]).unwrap().to_device(&dev).unwrap(),
        )
        .unwrap();
        b.i(s![.., 0]).unwrap().add_(100).unwrap();
        assert_eq!((b.storage_id(), b.data_ptr()), (id, ptr));
        assert_eq!(
            b.to_vec2::<i64>().unwrap(),
            vec![
                vec![100, 7, 2, 9],
                vec![112, 12, 12, 12],
                vec![112, 12, 12, 12]
            ]
        );
        let x = Tensor::ones([2, 3]).unwrap().to_device(&dev).unwrap();
        x.mul_(
            Tensor::new([1.0, 2.0, 3.0])
                .unwrap()
                .to_device(&dev)
                .unwrap(),
        )
        .unwrap();
        x.sub_(0.5).unwrap();
        x.t().unwrap().div_(2.0).unwrap();
        assert_eq!(
            x.to_vec::<f32>().unwrap(),
            vec![0.25, 0.75, 1.25, 0.25, 0.75, 1.25]
        );
        x.zero_().unwrap();
        assert_eq!(x.sum().unwrap().item::<f64>().unwrap(), 0.0);
    }
}

#[test]
fn same_random_stream_on_every_device() {
    let _serial = serial();
    for dev in gpus() {
        for (name, cpu, gpu) in [
            ("rand", Tensor::rand_with([1000], &mut Generator::new(9)), {
                wgrad::manual_seed(9);
                Tensor::rand_on([1000], &dev)
            }),
            (
                "randn",
                Tensor::randn_with([1000], &mut Generator::new(9)),
                {
                    wgrad::manual_seed(9);
                    Tensor::randn_on([1000], &dev)
                },
            ),
        ] {
            let (c, g) = (
                cpu.unwrap().to_vec::<f32>().unwrap(),
                gpu.unwrap()
                    .to_device(&Device::Cpu)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap(),
            );
            let e: Vec<f64> = c.iter().map(|&x| x as f64).collect();
            common::assert_close(&g, &e, 1e-5, 1e-5, name);
        }
        wgrad::manual_seed(3);
        let gi = Tensor::randint_on(-5, 17, [500], &dev)
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap();
        let ci = Tensor::randint_with(-5, 17, [500], &mut Generator::new(3)).unwrap();
        assert_eq!(gi.to_vec::<i64>().unwrap(), ci.to_vec::<i64>().unwrap());
        // The stream continues across calls the same way.
        wgrad::manual_seed(11);
        let _ = Tensor::rand_on([7], &dev).unwrap();
        let second = Tensor::rand_on([5], &dev)
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap();
        let mut g = Generator::new(11);
        let _ = Tensor::rand_with([7], &mut g).unwrap();
        assert_eq!(
            second.to_vec::<f32>().unwrap(),
            Tensor::rand_with([5], &mut g)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
        );
        let a = Tensor::arange_on(0.5, 10.0, 0.75, &dev)
            .unwrap()
            .to_device(&Device::Cpu)
            .unwrap();
        assert_eq!(
            a.to_vec::<f32>().unwrap(),
            Tensor::arange(0.5, 10.0, 0.75)
                .unwrap()
                .to_vec::<f32>()
                .unwrap()
        );
    }
}

#[test]
fn backward_on_gpu_matches_and_makes_no_readback() {
    let _serial = serial();
    for dev in gpus() {
        let Device::Gpu(gpu) = &dev else {
            unreachable!()
        };
        let mut g = Generator::new(6);
        let w_cpu = randn(&mut g, &[5, 3]);
        let x_cpu = randn(&mut g, &[4, 5]);
        let loss = |w: &Tensor, x: &Tensor| -> Result<Tensor> {
            x.matmul(w)?
                .tanh()?
                .log_softmax(1)?
                .max_dims([1], false)?
                .mean()
        };
        let w1 = w_cpu.detach().requires_grad_(true).unwrap();
        loss(&w1, &x_cpu).unwrap().backward().unwrap();
        let w2 = w_cpu.to_device(&dev).unwrap().requires_grad_(true).unwrap();
        let x2 = x_cpu.to_device(&dev).unwrap();
        let l = loss(&w2, &x2).unwrap();
        let before = gpu.stats().readbacks;
        l.backward().unwrap();
        assert_eq!(
            gpu.stats().readbacks,
            before,
            "backward read data back from the GPU"
        );
        let grad = w2.grad().unwrap();
        assert_eq!(grad.device(), &dev);
        let e: Vec<f64> = w1
            .grad()
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|&v| v as f64)
            .collect();
        common::assert_close(
            &grad
                .to_device(&Device::Cpu)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            &e,
            1e-4,
            1e-5,
            "grad on gpu",
        );
    }
}

#[test]
fn gpu_errors_are_values() {
    let _serial = serial();
    for dev in gpus() {
        let Device::Gpu(gpu) = &dev else {
            unreachable!()
        };
        // Mixed devices.
        let c = Tensor::ones([2]).unwrap();
        let g = c.to_device(&dev).unwrap();
        assert!(matches!(
            c.add(&g).unwrap_err(),
            Error::DeviceMismatch { .. }
        ));
        // Over the adapter's storage binding limit: a clear error naming the limit.
        let limit = gpu.adapter_info();
        let _ = limit;
        let huge = (gpu.max_storage_binding() / 4 + 1) as usize;
        match Tensor::zeros_on([huge], (DType::F32, &dev)) {
            Err(Error::BufferTooLarge { limit, .. }) => {
                assert_eq!(limit, gpu.max_storage_binding())
            }
            other => panic!("expected BufferTooLarge, got {other:?}"),
        }
        // An op on a view expanded past the device's limits is refused before it allocates.
        let wide = Tensor::ones_on([1], (DType::F32, &dev))
            .unwrap()
            .expand([1usize << 40])
            .unwrap();
        assert!(matches!(
            wide.add_scalar(1.0),
            Err(Error::BufferTooLarge { .. })
        ));
        // A product wider than the grid limit (65537 blocks of 64 columns) is an Err.
        let row = Tensor::ones_on([1, 1], (DType::I64, &dev)).unwrap();
        let wide = Tensor::ones_on([1, 64 * 65_537], (DType::I64, &dev)).unwrap();
        let e = row.matmul(&wide).unwrap_err();
        assert!(e.to_string().contains("workgroups"), "{e}");
        // An out-of-range index found by a kernel surfaces at the next readback.
        let x = Tensor::arange(0.0, 6.0, 1.0)
            .unwrap()
            .to_device(&dev)
            .unwrap();
        let idx = Tensor::new([0, 9]).unwrap().to_device(&dev).unwrap();
        let picked = x.index_select(0, &idx).unwrap();
        assert!(picked.to_vec::<f32>().is_err());
        // ... once: the device stays usable.
        assert_eq!(x.sum().unwrap().item::<f64>().unwrap(), 15.0);
    }
}

type Unary = fn(&Tensor) -> Result<Tensor>;
type Binary = fn(&Tensor, &Tensor) -> Result<Tensor>;

/// I64 is 64-bit on the GPU too (two words per element): values beyond 32 bits, wrapping
/// overflow, carries between the words, and every integer kernel agree with the CPU.
#[test]
fn integers_are_64_bit_on_every_device() {
    let _serial = serial();
    let big = Tensor::new([
        3_000_000_000i64,
        -5_000_000_000,
        7,
        -1,
        i64::MAX,
        i64::MIN,
        0,
        123_456_789_012,
    ])
    .unwrap();
    let other = Tensor::new([
        -3_000_000_000i64,
        4_294_967_295,
        -7,
        -1,
        1,
        -1,
        9_000_000_000,
        -123_456_789_013,
    ])
    .unwrap();
    let unary: [(&str, Unary); 7] = [
        ("neg", |t| t.neg()),
        ("abs", |t| t.abs()),
        ("relu", |t| t.relu()),
        ("square", |t| t.square()),
        ("sign", |t| t.sign()),
        ("to_bool", |t| t.to_dtype(DType::Bool)),
        ("logical_not", |t| t.logical_not()),
    ];
    for (name, f) in unary {
        agree(name, &[big.clone()], |t| f(&t[0]));
    }
    let binary: [(&str, Binary); 11] = [
        ("add", |a, b| a.add(b)),
        ("sub", |a, b| a.sub(b)),
        ("mul", |a, b| a.mul(b)),
        ("maximum", |a, b| a.maximum(b)),
        ("minimum", |a, b| a.minimum(b)),
        ("eq", |a, b| a.eq(b)),
        ("lt", |a, b| a.lt(b)),
        ("le", |a, b| a.le(b)),
        ("gt", |a, b| a.gt(b)),
        ("ge", |a, b| a.ge(b)),
        ("logical_xor", |a, b| a.logical_xor(b)),
    ];
    for (name, f) in binary {
        agree(name, &[big.clone(), other.clone()], |t| f(&t[0], &t[1]));
        // Broadcast against one row, and a strided view.
        agree(name, &[big.clone(), other.clone()], |t| {
            f(&t[0].reshape([2, 4])?.t()?, &t[1].i(s![..2])?)
        });
    }
    agree("pow", &[big.clone()], |t| {
        let exponents = Tensor::new([0i64, 1, 1 << 40, 3, 5, 2, 9, 3])?;
        t[0].pow(&exponents.to_device(t[0].device())?)
    });
    agree("add_scalar", &[big.clone()], |t| {
        t[0].add_scalar(1i64 << 33)
    });
    agree("clamp", &[big.clone()], |t| {
        t[0].clamp(-4_000_000_000i64, 5_000_000_000i64)
    });
    agree("where", &[big.clone(), other.clone()], |t| {
        Tensor::where_cond(&t[0].gt(&t[1])?, &t[0], &t[1])
    });
    agree("masked_fill", &[big.clone()], |t| {
        t[0].masked_fill(&t[0].lt_scalar(0i64)?, 1i64 << 40)
    });
    for (name, f) in [
        ("sum", Tensor::sum as Unary),
        ("prod", Tensor::prod),
        ("max", Tensor::max),
        ("min", Tensor::min),
        ("argmax", Tensor::argmax),
        ("argmin", Tensor::argmin),
    ] {
        agree(name, &[big.clone()], |t| f(&t[0]));
    }
    agree("cumsum", &[big.clone()], |t| t[0].cumsum(0));
    agree(
        "add_ then mul_ in place",
        &[big.clone(), other.clone()],
        |t| {
            let dst = t[0].mul_scalar(1i64)?; // a fresh buffer: the inputs stay as they are
            dst.i(s![1..])?.add_(&t[1].i(s![..7])?)?;
            dst.mul_(&t[1])?;
            Ok(dst)
        },
    );
    agree("argmax along a dim", &[big.clone()], |t| {
        t[0].reshape([2, 4])?.argmax_dim(1, false)
    });
    agree("matmul", &[big.clone(), other.clone()], |t| {
        t[0].reshape([2, 4])?.matmul(&t[1].reshape([4, 2])?)
    });
    agree("index_select", &[big.clone()], |t| {
        t[0].index_select(0, &Tensor::new([5i64, 0, 7])?.to_device(t[0].device())?)
    });
    // Low words that carry into the high word when added.
    agree("scatter_add", &[big.clone()], |t| {
        let idx = Tensor::new([0i64, 0, 0, 3])?.to_device(t[0].device())?;
        let src = Tensor::new([4_294_967_295i64, 4_294_967_295, 1, -2])?;
        t[0].scatter_add(0, &idx, &src.to_device(t[0].device())?)
    });
    // Long enough for split reductions and a multi-chunk scan.
    let long = Tensor::arange(0i64, 300_000, 1)
        .unwrap()
        .mul_scalar(100_000i64)
        .unwrap();
    agree("long sum", &[long.clone()], |t| t[0].sum());
    agree("long max", &[long.clone()], |t| t[0].max());
    agree("long cumsum", &[long.clone()], |t| t[0].cumsum(0));
    for dev in gpus() {
        let on_cpu = |t: Tensor| t.to_device(&Device::Cpu).unwrap();
        // Creation on the device.
        let a = Tensor::arange_on(-(1i64 << 40), 1i64 << 41, 1i64 << 37, &dev).unwrap();
        let expected = Tensor::arange(-(1i64 << 40), 1i64 << 41, 1i64 << 37).unwrap();
        assert_eq!(
            on_cpu(a).to_vec::<i64>().unwrap(),
            expected.to_vec::<i64>().unwrap()
        );
        let f = Tensor::full_on([3], i64::MIN + 5, (DType::I64, &dev)).unwrap();
        assert_eq!(on_cpu(f).to_vec::<i64>().unwrap(), vec![i64::MIN + 5; 3]);
        wgrad::manual_seed(21);
        let r = Tensor::randint_on(-(1i64 << 40), 1i64 << 42, [300], &dev).unwrap();
        let c = Tensor::randint_with(-(1i64 << 40), 1i64 << 42, [300], &mut Generator::new(21));
        assert_eq!(
            on_cpu(r).to_vec::<i64>().unwrap(),
            c.unwrap().to_vec::<i64>().unwrap()
        );
        // Casts round and truncate exactly as the CPU's `as` (2^55 + 2^31 + 1 rounds up,
        // where converting each word separately would round to even, down).
        let ints = Tensor::new([(1i64 << 55) + (1 << 31) + 1, -(1 << 40) - 1, i64::MAX]).unwrap();
        let floats = Tensor::new([3.0e10f32, -3.0e10, 1.0e20, -1.0e20, f32::NAN, -2.5]).unwrap();
        let cast = |x: &Tensor, to| on_cpu(x.to_device(&dev).unwrap().to_dtype(to).unwrap());
        let bits = |t: Tensor| -> Vec<u32> {
            t.to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        };
        assert_eq!(
            bits(cast(&ints, DType::F32)),
            bits(ints.to_dtype(DType::F32).unwrap())
        );
        assert_eq!(
            cast(&floats, DType::I64).to_vec::<i64>().unwrap(),
            floats
                .to_dtype(DType::I64)
                .unwrap()
                .to_vec::<i64>()
                .unwrap()
        );
    }
}

#[test]
fn more_than_one_dispatch_dimension() {
    let _serial = serial();
    // 2^24 + 1 elements need more than 65535 workgroups of 256: a 2-D grid.
    for dev in gpus() {
        let n = (1usize << 24) + 1;
        let x = Tensor::ones_on([n], (DType::F32, &dev)).unwrap();
        let y = x.add_scalar(1.0).unwrap();
        let tail = y.i(s![-3..]).unwrap().to_device(&Device::Cpu).unwrap();
        assert_eq!(tail.to_vec::<f32>().unwrap(), vec![2.0; 3]);
        // 2n is not exactly representable in f32: compare within one rounding step.
        let total = y.sum().unwrap().item::<f64>().unwrap();
        assert!((total - 2.0 * n as f64).abs() <= 4.0, "{total}");
    }
    // A batch of more matrices than workgroups per dimension: several dispatches, for the
    // strided kernel and the vec4 one.
    let mut g = Generator::new(12);
    for (a, b) in [
        ([70_000, 2, 3], [70_000, 3, 2]),
        ([70_000, 4, 4], [70_000, 4, 4]),
    ] {
        let x = randn(&mut g, &a);
        let y = randn(&mut g, &b);
        agree(&format!("matmul batch {a:?}"), &[x, y], |t| {
            t[0].matmul(&t[1])
        });
    }
}

#[test]
fn buffers_are_reused_and_work_is_batched() {
    let _serial = serial();
    for dev in gpus() {
        let Device::Gpu(gpu) = &dev else {
            unreachable!()
        };
        let x = Tensor::ones_on([1000], (DType::F32, &dev)).unwrap();
        for _ in 0..3 {
            let _ = x.add(&x).unwrap().to_vec::<f32>().unwrap();
        }
        let before = gpu.stats();
        for _ in 0..20 {
            let _ = x.mul_scalar(2.0).unwrap().exp().unwrap().sum().unwrap();
        }
        let _ = x.sum().unwrap().item::<f32>().unwrap();
        let after = gpu.stats();
        assert!(after.reuses > before.reuses, "{before:?} -> {after:?}");
        assert!(
            after.allocations - before.allocations < 20,
            "{before:?} -> {after:?}"
        );
        assert!(
            after.submits - before.submits <= 2,
            "80 dispatches went out in {} submits",
            after.submits - before.submits
        );
        assert_eq!(after.readbacks - before.readbacks, 1);
    }
}

/// A view of a base tensor, to be made on each device from the base moved there.
#[derive(Debug, Clone)]
enum View {
    Transpose(isize, isize),
    Narrow(isize, usize, usize),
    Expand(Vec<usize>),
}

fn apply(t: &Tensor, views: &[View]) -> Result<Tensor> {
    views.iter().try_fold(t.clone(), |t, v| match v {
        View::Transpose(a, b) => t.transpose(*a, *b),
        View::Narrow(d, start, len) => t.narrow(*d, *start, *len),
        View::Expand(shape) => t.expand(shape.clone()),
    })
}

/// A random base (rank 0 to 4, sizes 1 to 6, values past 32 bits for I64) and up to three
/// random views of it.
fn random_base_and_views(g: &mut Generator, dtype: DType) -> (Tensor, Vec<View>) {
    let mut pick = |n: usize| -> usize {
        Tensor::randint_with(0, n.max(1) as i64, [1], g)
            .unwrap()
            .item::<i64>()
            .unwrap() as usize
    };
    let rank = pick(5);
    let shape: Vec<usize> = (0..rank).map(|_| 1 + pick(6)).collect();
    let view_count = pick(4);
    let mut views = Vec::new();
    let mut current = shape.clone();
    for _ in 0..view_count {
        let nd = current.len();
        if nd == 0 {
            break;
        }
        let d = pick(nd);
        let view = match pick(3) {
            0 if nd >= 2 => View::Transpose(d as isize, pick(nd) as isize),
            1 => {
                let start = pick(current[d]);
                View::Narrow(d as isize, start, 1 + pick(current[d] - start))
            }
            _ if current[d] == 1 => {
                let mut s = current.clone();
                s[d] = 1 + pick(4);
                View::Expand(s)
            }
            _ => continue,
        };
        match &view {
            View::Transpose(a, b) => current.swap(*a as usize, *b as usize),
            View::Narrow(d, _, len) => current[*d as usize] = *len,
            View::Expand(s) => current = s.clone(),
        }
        views.push(view);
    }
    let base = match dtype {
        DType::F32 => Tensor::randn_with(shape, g),
        DType::I64 => Tensor::randint_with(-(1 << 40), 1 << 40, shape, g),
        DType::Bool => Tensor::randn_with(shape, g).and_then(|t| t.gt_scalar(0.0)),
        DType::F16 | DType::BF16 | DType::F64 => {
            Tensor::randn_with(shape, g).and_then(|t| t.to_dtype(dtype))
        }
    };
    (base.unwrap(), views)
}

/// Random views of every dtype (transposed, narrowed, expanded, of random ranks) give the
/// same results on the GPU as on the CPU, for elementwise ops, reductions, scans, casts,
/// joins, index ops, matmul and in-place writes through the view, and the same gradients.
#[test]
fn random_views_agree() {
    let _serial = serial();
    if gpus().is_empty() {
        return;
    }
    let mut g = Generator::new(2026);
    let ops: [(&str, Binary); 15] = [
        ("add", |a, b| a.add(b)),
        ("mul", |a, b| a.mul(b)),
        ("maximum", |a, b| a.maximum(b)),
        ("lt", |a, b| a.lt(b)),
        ("where", |a, b| Tensor::where_cond(&a.gt(b)?, a, b)),
        ("abs and contiguous", |a, _| a.abs()?.contiguous()),
        ("sum along the first dim", |a, _| match a.ndim() {
            0 => a.sum(),
            _ => a.to_dtype(DType::F32)?.sum_dims([0], false),
        }),
        ("max and argmax", |a, _| match a.numel() {
            0 => a.sum(),
            _ => a
                .to_dtype(DType::F32)?
                .argmax()?
                .add(&a.max()?.to_dtype(DType::I64)?),
        }),
        ("cumsum along the last dim", |a, _| match a.ndim() {
            0 => a.sum(),
            _ => a.to_dtype(DType::I64)?.cumsum(-1),
        }),
        ("softmax of a cast", |a, _| match a.ndim() {
            0 => a.sum(),
            _ => a.to_dtype(DType::F32)?.softmax(0),
        }),
        ("cat and index_select", |a, _| match a.ndim() {
            0 => a.sum(),
            _ => {
                let last = a.shape()[0] as i64 - 1;
                let index = Tensor::new([last, 0, 2 * last + 1])?.to_device(a.device())?;
                Tensor::cat(&[a, a], 0)?.index_select(0, &index)
            }
        }),
        ("masked_fill and clamp", |a, b| {
            let mask = b.to_dtype(DType::F32)?.gt_scalar(0.0)?;
            a.to_dtype(DType::F32)?
                .clamp(-0.5, 0.5)?
                .masked_fill(&mask, 3.0)
        }),
        ("min along the last dim and logsumexp", |a, _| {
            match a.ndim() {
                0 => a.sum(),
                _ => {
                    let x = a.to_dtype(DType::F32)?;
                    x.min_dims([-1], true)?.add(&x.logsumexp([-1], true)?)
                }
            }
        }),
        ("prod of a cast", |a, _| a.to_dtype(DType::I64)?.prod()),
        ("matmul with its own transpose", |a, _| match a.ndim() {
            0 | 1 => a.sum(),
            _ => {
                let x = a.to_dtype(DType::F32)?;
                x.matmul(&x.transpose(-1, -2)?)
            }
        }),
    ];
    for case in 0..150 {
        let dtype = [DType::F32, DType::I64, DType::Bool][case % 3];
        let (a, va) = random_base_and_views(&mut g, dtype);
        let (b, vb) = random_base_and_views(&mut g, dtype);
        for (name, op) in ops {
            let label = format!(
                "case {case}: {name} of {:?} {va:?} and {:?} {vb:?}",
                a.shape(),
                b.shape()
            );
            let (va, vb) = (va.clone(), vb.clone());
            // Shapes that do not broadcast are an Err on both devices.
            let result = |t: &[Tensor]| op(&apply(&t[0], &va)?, &apply(&t[1], &vb)?);
            if result(&[a.clone(), b.clone()]).is_err() {
                for dev in gpus() {
                    let moved = [a.to_device(&dev).unwrap(), b.to_device(&dev).unwrap()];
                    assert!(result(&moved).is_err(), "{label}: Ok on {dev} only");
                }
                continue;
            }
            agree(&label, &[a.clone(), b.clone()], result);
        }
        if dtype == DType::F32 {
            // Gradients through the views, back to both bases.
            for (name, op) in &ops[..5] {
                let (va, vb) = (va.clone(), vb.clone());
                let grads = |t: &[Tensor]| -> Result<Tensor> {
                    let a = t[0].detach().requires_grad_(true)?;
                    let b = t[1].detach().requires_grad_(true)?;
                    let out = op(&apply(&a, &va)?, &apply(&b, &vb)?)?;
                    let loss = out
                        .to_dtype(DType::F32)?
                        .mul(&out.to_dtype(DType::F32)?)?
                        .sum()?;
                    let g = wgrad::grad(&loss, &[&a, &b], false)?;
                    Tensor::cat(&[&g[0].reshape([-1])?, &g[1].reshape([-1])?], 0)
                };
                let inputs = [a.detach(), b.detach()];
                if grads(&inputs).is_ok() {
                    agree(
                        &format!("case {case}: gradient of {name} through {va:?} and {vb:?}"),
                        &inputs,
                        grads,
                    );
                }
            }
        }
        if dtype == DType::F32 && !va.iter().any(|v| matches!(v, View::Expand(_))) {
            agree(
                &format!("case {case}: add_ through {va:?}"),
                &[a.clone()],
                |t| {
                    let fresh = t[0].mul_scalar(1.0)?;
                    let view = apply(&fresh, &va)?;
                    view.add_(&view.mul_scalar(2.0)?)?;
                    Ok(fresh)
                },
            );
        }
    }
}

/// Freed buffers are kept for reuse, and `empty_cache` gives them back, on every device.
#[test]
fn empty_cache_gives_memory_back() {
    let _serial = serial();
    for dev in common::devices() {
        dev.empty_cache();
        let big = Tensor::ones_on([1 << 20], (DType::F32, &dev)).unwrap();
        let doubled = big.mul_scalar(2.0).unwrap();
        drop(big);
        dev.synchronize().unwrap();
        let cached = dev.memory_stats().cached_bytes;
        assert!(cached >= 4 << 20, "{dev}: {cached} bytes cached");
        dev.empty_cache();
        assert_eq!(dev.memory_stats().cached_bytes, 0, "{dev}");
        // The device works on after it: fresh buffers, the live tensor intact.
        let total = doubled
            .add_scalar(1.0)
            .unwrap()
            .sum()
            .unwrap()
            .item::<f64>()
            .unwrap();
        assert_eq!(total, 3.0 * (1 << 20) as f64);
    }
}

/// Tensors, devices and errors cross threads, and threads sharing one GPU get the CPU's
/// results (the batch, the pool and the pipeline cache are shared under locks).
#[test]
fn threads_share_a_gpu() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Tensor>();
    send_sync::<Device>();
    send_sync::<Error>();
    let _serial = serial();
    for dev in gpus() {
        let workers: Vec<_> = (0..4u64)
            .map(|seed| {
                let dev = dev.clone();
                std::thread::spawn(move || -> Result<()> {
                    let mut g = Generator::new(100 + seed);
                    for step in 0..20 {
                        let x = Tensor::randn_with([33, 47], &mut g)?;
                        let w = Tensor::randn_with([47, 12], &mut g)?;
                        let f = |x: &Tensor, w: &Tensor| -> Result<Tensor> {
                            x.matmul(w)?.relu()?.sum_dims([0], false)?.softmax(0)
                        };
                        let expected = f(&x, &w)?.to_vec::<f32>()?;
                        let got = f(&x.to_device(&dev)?, &w.to_device(&dev)?)?
                            .to_device(&Device::Cpu)?
                            .to_vec::<f32>()?;
                        for (e, v) in expected.iter().zip(&got) {
                            assert!(
                                (e - v).abs() <= 1e-5,
                                "thread {seed} step {step}: {e} vs {v}"
                            );
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker panicked").unwrap();
        }
    }
}
