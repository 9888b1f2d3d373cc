//! `render_field --window`: the field in a window, redrawn as training goes on. Each frame
//! trains a few steps, evaluates the grid and draws the output tensor's buffer to the
//! window's surface with the same render pipeline as the offscreen path.

use crate::field_renderer::FieldRenderer;
use crate::Field;
use std::sync::Arc;
use winit::application::ApplicationHandler;
use winit::event::WindowEvent;
use winit::event_loop::{ActiveEventLoop, EventLoop};
use winit::window::{Window, WindowId};

struct Running {
    window: Arc<Window>,
    surface: wgpu::Surface<'static>,
    device: wgpu::Device,
    queue: wgpu::Queue,
    renderer: FieldRenderer,
    field: Field,
    dev: wgrad::Device,
}

struct App {
    size: u32,
    steps: usize,
    exit_when_done: bool,
    running: Option<Running>,
    error: Option<Box<dyn std::error::Error>>,
}

impl App {
    fn start(&mut self, event_loop: &ActiveEventLoop) -> Result<(), Box<dyn std::error::Error>> {
        let attrs = Window::default_attributes()
            .with_title("wgrad: learning a field")
            .with_inner_size(winit::dpi::PhysicalSize::new(self.size, self.size))
            .with_resizable(false);
        let window = Arc::new(event_loop.create_window(attrs)?);
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let surface = instance.create_surface(window.clone())?;
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            compatible_surface: Some(&surface),
            ..Default::default()
        }))?;
        let (device, queue) =
            pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
                required_limits: adapter.limits(),
                ..Default::default()
            }))?;
        let format = surface
            .get_capabilities(&adapter)
            .formats
            .iter()
            .copied()
            .find(|f| !f.is_srgb())
            .unwrap_or(wgpu::TextureFormat::Bgra8Unorm);
        let config = surface
            .get_default_config(&adapter, self.size, self.size)
            .ok_or("the surface does not fit this adapter")?;
        surface.configure(&device, &wgpu::SurfaceConfiguration { format, ..config });
        let dev = wgrad::Device::from_wgpu(device.clone(), queue.clone())?;
        let field = Field::new(&dev, self.size as usize)?;
        let renderer = FieldRenderer::with_format(&device, self.size, self.size, format);
        window.request_redraw();
        self.running = Some(Running {
            window,
            surface,
            device,
            queue,
            renderer,
            field,
            dev,
        });
        Ok(())
    }

    fn frame(&mut self) -> Result<bool, Box<dyn std::error::Error>> {
        let r = self.running.as_mut().ok_or("no window")?;
        if r.field.steps < self.steps {
            r.field.train(10)?;
        }
        let image = r.field.image()?;
        let view = image.wgpu_buffer()?;
        r.dev.flush();
        let frame = match r.surface.get_current_texture() {
            wgpu::CurrentSurfaceTexture::Success(t)
            | wgpu::CurrentSurfaceTexture::Suboptimal(t) => t,
            other => return Err(format!("no surface texture: {other:?}").into()),
        };
        let target = frame.texture.create_view(&Default::default());
        r.renderer
            .draw_to(&r.device, &r.queue, view.binding(), &target);
        r.queue.present(frame);
        r.window
            .set_title(&format!("wgrad: learning a field, step {}", r.field.steps));
        Ok(r.field.steps < self.steps)
    }
}

impl ApplicationHandler for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.running.is_none() {
            if let Err(e) = self.start(event_loop) {
                self.error = Some(e);
                event_loop.exit();
            }
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::RedrawRequested => match self.frame() {
                Ok(more) => {
                    if more {
                        if let Some(r) = &self.running {
                            r.window.request_redraw();
                        }
                    } else if self.exit_when_done {
                        if let Some(r) = &self.running {
                            println!(
                                "trained {} steps in the window; mean absolute error {:.4}",
                                r.field.steps,
                                r.field.error().unwrap_or(f64::NAN)
                            );
                        }
                        event_loop.exit();
                    }
                }
                Err(e) => {
                    self.error = Some(e);
                    event_loop.exit();
                }
            },
            _ => {}
        }
    }
}

pub fn run(
    size: u32,
    steps: usize,
    exit_when_done: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let event_loop = EventLoop::new()?;
    let mut app = App {
        size,
        steps,
        exit_when_done,
        running: None,
        error: None,
    };
    event_loop.run_app(&mut app)?;
    match app.error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
