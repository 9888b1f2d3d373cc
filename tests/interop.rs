//! wgrad on an application's own wgpu device: a tensor drawn by the application's render
//! pipeline straight from its buffer, tensors over the application's buffers, limit checks,
//! and both sharing one device without validation errors. Runs on lavapipe in CI.

#[path = "../examples/render_field/field_renderer.rs"]
#[allow(dead_code)]
mod field_renderer;

use field_renderer::FieldRenderer;
use wgrad::{DType, Device, Error, Tensor};

/// The application's device and queue, or None (with a note) when there is no adapter.
fn app_device(limits: Option<wgpu::Limits>) -> Option<(wgpu::Adapter, wgpu::Device, wgpu::Queue)> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = match pollster::block_on(instance.request_adapter(&Default::default())) {
        Ok(a) => a,
        Err(e) => {
            assert!(
                std::env::var("WGRAD_REQUIRE_GPU").as_deref() != Ok("1"),
                "WGRAD_REQUIRE_GPU=1 but no adapter: {e}"
            );
            eprintln!("note: no GPU adapter ({e}); interop tests skipped");
            return None;
        }
    };
    let required_limits = limits.unwrap_or_else(|| adapter.limits());
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits,
        ..Default::default()
    }))
    .expect("request_device");
    Some((adapter, device, queue))
}

#[test]
fn render_pipeline_draws_the_tensor_buffer() {
    let Some((_, device, queue)) = app_device(None) else {
        return;
    };
    let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let dev = Device::from_wgpu(device.clone(), queue.clone()).unwrap();
    let (w, h) = (37u32, 23u32);
    // A field computed on the GPU by wgrad: a ramp through sin, so values span [0, 1].
    let t = Tensor::arange_on(0.0, (w * h) as f64, 1.0, &dev)
        .unwrap()
        .mul_scalar(0.01)
        .unwrap()
        .sin()
        .unwrap()
        .mul_scalar(0.5)
        .unwrap()
        .add_scalar(0.5)
        .unwrap();
    let view = t.wgpu_buffer().unwrap();
    dev.flush();
    let renderer = FieldRenderer::new(&device, w, h);
    renderer.draw(&device, &queue, view.binding());
    let pixels = renderer.read_pixels(&device, &queue);
    let values = t.to_vec::<f32>().unwrap();
    for (i, v) in values.iter().enumerate() {
        let expected = (v.clamp(0.0, 1.0) * 255.0).round() as i32;
        let got = pixels[i * 4] as i32;
        assert!(
            (got - expected).abs() <= 1,
            "pixel {i}: {got} vs {expected}"
        );
        assert_eq!(pixels[i * 4 + 3], 255);
    }
    assert!(
        pollster::block_on(scope.pop()).is_none(),
        "validation error while sharing the device"
    );
}

#[test]
fn tensors_over_the_applications_buffers() {
    let Some((adapter, device, queue)) = app_device(None) else {
        return;
    };
    let align = adapter.limits().min_storage_buffer_offset_alignment as u64;
    let dev = Device::from_wgpu(device.clone(), queue.clone()).unwrap();
    let usage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let make = |size: u64| {
        device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        })
    };

    // Data written by the application's copy pass.
    let staging = make(64);
    let values: Vec<f32> = (0..16).map(|i| i as f32 * 0.5).collect();
    queue.write_buffer(
        &staging,
        0,
        &values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    let shared = make(64);
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(&staging, 0, &shared, 0, 64);
    queue.submit([enc.finish()]);
    let t = Tensor::from_wgpu_buffer(&shared, [4, 4], DType::F32, &dev).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), values);
    assert_eq!(t.sum().unwrap().item::<f64>().unwrap(), 60.0);

    // Data written by the application's compute pass.
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl("@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) id: vec3<u32>) { out[id.x] = f32(id.x) * 3.0; }".into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: None,
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let computed = make(64);
    let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[wgpu::BindGroupEntry {
            binding: 0,
            resource: computed.as_entire_binding(),
        }],
    });
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    queue.submit([enc.finish()]);
    let c = Tensor::from_wgpu_buffer(&computed, [16], DType::F32, &dev).unwrap();
    assert_eq!(
        c.to_vec::<f32>().unwrap(),
        (0..16).map(|i| i as f32 * 3.0).collect::<Vec<_>>()
    );
    // wgrad writes in place into the application's buffer.
    c.mul_(2.0).unwrap();
    dev.flush();
    assert_eq!(
        Tensor::from_wgpu_buffer(&computed, [16], DType::F32, &dev)
            .unwrap()
            .i(wgrad::s![5])
            .unwrap()
            .item::<f64>()
            .unwrap(),
        30.0
    );

    // Checked: usage, size, device kind.
    let no_storage = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 64,
        usage: wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    assert!(
        Tensor::from_wgpu_buffer(&no_storage, [16], DType::F32, &dev)
            .unwrap_err()
            .to_string()
            .contains("STORAGE")
    );
    assert!(Tensor::from_wgpu_buffer(&shared, [17], DType::F32, &dev).is_err());
    // I64 elements are 8 bytes (little-endian i64): the 64-byte buffer holds 8 of them, not 9.
    let ints = Tensor::from_wgpu_buffer(&shared, [8], DType::I64, &dev).unwrap();
    let expected: Vec<i64> = values
        .chunks(2)
        .map(|w| (w[0].to_bits() as u64 | (w[1].to_bits() as u64) << 32) as i64)
        .collect();
    assert_eq!(ints.to_vec::<i64>().unwrap(), expected);
    assert!(Tensor::from_wgpu_buffer(&shared, [9], DType::I64, &dev).is_err());
    // A view is lent with its byte offset when that is a multiple of the device's binding
    // alignment (32 bytes on lavapipe, 256 on most GPUs), and refused otherwise.
    match ints.i(wgrad::s![4..]).unwrap().wgpu_buffer() {
        Ok(lent) => assert_eq!((lent.offset, lent.size, 32 % align), (32, 32, 0)),
        Err(e) => assert!(
            32 % align != 0 && e.to_string().contains("alignment"),
            "{e}"
        ),
    }
    assert!(Tensor::from_wgpu_buffer(&shared, [4], DType::F32, &Device::Cpu).is_err());
    // A view and a CPU tensor have no buffer to lend.
    assert!(t.t().unwrap().wgpu_buffer().is_err());
    assert!(Tensor::ones([2]).unwrap().wgpu_buffer().is_err());
    // A view whose start is not a multiple of the binding alignment cannot be bound.
    let flat = t.reshape([16]).unwrap();
    match flat.i(wgrad::s![1..]).unwrap().wgpu_buffer() {
        Err(e) => assert!(e.to_string().contains("alignment"), "{e}"),
        Ok(_) => panic!("a view 4 bytes into its buffer was lent"),
    }
}

#[test]
fn a_buffer_past_the_binding_limit_is_refused() {
    let Some((adapter, _, _)) = app_device(None) else {
        return;
    };
    let mut limits = adapter.limits();
    limits.max_storage_buffer_binding_size = 1 << 20;
    let Some((_, device, queue)) = app_device(Some(limits)) else {
        return;
    };
    let dev = Device::from_wgpu(device.clone(), queue).unwrap();
    let big = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 2 << 20,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let e = Tensor::from_wgpu_buffer(&big, [16], DType::F32, &dev).unwrap_err();
    assert!(matches!(e, wgrad::Error::BufferTooLarge { .. }), "{e}");
}

#[test]
fn a_device_without_the_needed_limits_is_refused() {
    let mut limits = wgpu::Limits::downlevel_defaults();
    limits.max_storage_buffers_per_shader_stage = 4;
    let Some((_, device, queue)) = app_device(Some(limits)) else {
        return;
    };
    let err = Device::from_wgpu(device, queue).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }));
    assert!(
        err.to_string()
            .contains("max_storage_buffers_per_shader_stage"),
        "{err}"
    );
}

#[test]
fn a_lost_device_is_an_error_not_a_panic() {
    let Some((_, device, queue)) = app_device(None) else {
        return;
    };
    let dev = Device::from_wgpu(device.clone(), queue).unwrap();
    let x = Tensor::ones_on([8], (DType::F32, &dev)).unwrap();
    device.destroy();
    let _ = device.poll(wgpu::PollType::wait_indefinitely());
    match x.add_scalar(1.0).and_then(|y| y.to_vec::<f32>().map(|_| y)) {
        Err(Error::DeviceLost(_)) => {}
        other => panic!("expected DeviceLost, got {other:?}"),
    }
}
