//! A render pipeline that draws a tensor's GPU buffer directly: a fullscreen triangle whose
//! fragment shader reads `values[y * width + x]` from the storage buffer and writes it as a
//! grey level. Shared by the `render_field` example and the interop tests.

const SHADER: &str = r#"
struct Size {
    width: u32,
    height: u32,
}

@group(0) @binding(0) var<storage, read> values: array<f32>;
@group(0) @binding(1) var<uniform> size: Size;

@vertex
fn vs(@builtin(vertex_index) i: u32) -> @builtin(position) vec4<f32> {
    // One triangle that covers the whole target.
    let x = f32((i << 1u) & 2u) * 2.0 - 1.0;
    let y = f32(i & 2u) * 2.0 - 1.0;
    return vec4<f32>(x, y, 0.0, 1.0);
}

@fragment
fn fs(@builtin(position) pos: vec4<f32>) -> @location(0) vec4<f32> {
    let v = clamp(values[u32(pos.y) * size.width + u32(pos.x)], 0.0, 1.0);
    return vec4<f32>(v, v, v, 1.0);
}
"#;

/// Draws `width x height` values into an offscreen RGBA8 texture (and reads the pixels
/// back), or into any target of the pipeline's format, such as a window's surface.
pub struct FieldRenderer {
    pipeline: wgpu::RenderPipeline,
    target: wgpu::Texture,
    size_buffer: wgpu::Buffer,
    pub width: u32,
    pub height: u32,
}

impl FieldRenderer {
    pub fn new(device: &wgpu::Device, width: u32, height: u32) -> FieldRenderer {
        FieldRenderer::with_format(device, width, height, wgpu::TextureFormat::Rgba8Unorm)
    }

    /// A renderer whose pipeline draws into targets of `format`.
    pub fn with_format(
        device: &wgpu::Device,
        width: u32,
        height: u32,
        format: wgpu::TextureFormat,
    ) -> FieldRenderer {
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("field"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let pipeline = device.create_render_pipeline(&wgpu::RenderPipelineDescriptor {
            label: Some("field"),
            layout: None,
            vertex: wgpu::VertexState {
                module: &module,
                entry_point: Some("vs"),
                compilation_options: Default::default(),
                buffers: &[],
            },
            fragment: Some(wgpu::FragmentState {
                module: &module,
                entry_point: Some("fs"),
                compilation_options: Default::default(),
                targets: &[Some(wgpu::ColorTargetState {
                    format,
                    blend: None,
                    write_mask: wgpu::ColorWrites::ALL,
                })],
            }),
            primitive: Default::default(),
            depth_stencil: None,
            multisample: Default::default(),
            multiview_mask: None,
            cache: None,
        });
        let target = device.create_texture(&wgpu::TextureDescriptor {
            label: Some("field target"),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba8Unorm,
            usage: wgpu::TextureUsages::RENDER_ATTACHMENT | wgpu::TextureUsages::COPY_SRC,
            view_formats: &[],
        });
        let size_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("field size"),
            size: 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        FieldRenderer {
            pipeline,
            target,
            size_buffer,
            width,
            height,
        }
    }

    /// Record and submit the draw of `values` (a binding of `width * height` f32) into the
    /// offscreen texture.
    pub fn draw(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        values: wgpu::BindingResource<'_>,
    ) {
        let view = self.target.create_view(&Default::default());
        self.draw_to(device, queue, values, &view);
    }

    /// Record and submit the draw into `view` (of the pipeline's format).
    pub fn draw_to(
        &self,
        device: &wgpu::Device,
        queue: &wgpu::Queue,
        values: wgpu::BindingResource<'_>,
        view: &wgpu::TextureView,
    ) {
        let words = [self.width, self.height, 0, 0];
        queue.write_buffer(
            &self.size_buffer,
            0,
            &words
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: values,
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: self.size_buffer.as_entire_binding(),
                },
            ],
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("field"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view,
                    depth_slice: None,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.draw(0..3, 0..1);
        }
        queue.submit([encoder.finish()]);
    }

    /// The rendered pixels, RGBA8, row-major from the top.
    pub fn read_pixels(&self, device: &wgpu::Device, queue: &wgpu::Queue) -> Vec<u8> {
        let row = self.width * 4;
        let padded = row.div_ceil(256) * 256;
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("field readback"),
            size: (padded * self.height) as u64,
            usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ,
            mapped_at_creation: false,
        });
        let mut encoder = device.create_command_encoder(&Default::default());
        encoder.copy_texture_to_buffer(
            self.target.as_image_copy(),
            wgpu::TexelCopyBufferInfo {
                buffer: &buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(padded),
                    rows_per_image: None,
                },
            },
            wgpu::Extent3d {
                width: self.width,
                height: self.height,
                depth_or_array_layers: 1,
            },
        );
        queue.submit([encoder.finish()]);
        buffer
            .slice(..)
            .map_async(wgpu::MapMode::Read, |r| r.expect("map the pixels"));
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .expect("wait for the GPU");
        let data = buffer
            .slice(..)
            .get_mapped_range()
            .expect("mapped")
            .to_vec();
        (0..self.height as usize)
            .flat_map(|y| data[y * padded as usize..y * padded as usize + row as usize].to_vec())
            .collect()
    }
}
