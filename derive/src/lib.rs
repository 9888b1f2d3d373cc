//! `#[derive(Module)]`: a struct of layers and tensors becomes a `wgrad::nn::Module`.
//!
//! Every field is visited under its name, so none can be forgotten: a `Tensor` is a
//! parameter, a `#[module(buffer)]` tensor is saved but not trained, a submodule (any type
//! that is a `Module`), `Vec`, `Option` and `Box` of them are walked with dotted names
//! (`blocks.0.conv.weight`), plain settings (numbers, bools, strings) are skipped by their
//! type, and a field of any other type must say `#[module(skip)]`, or the struct does not
//! compile.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::{parse_macro_input, Data, DeriveInput, Fields, Index};

/// How one field takes part in the module.
enum Role {
    /// Visited through `wgrad::nn::Field` (parameters, submodules, settings).
    Field,
    /// A tensor (or `Option` of one) saved with the state but not trained.
    Buffer,
    /// Left out (`#[module(skip)]`).
    Skip,
}

fn role(field: &syn::Field) -> syn::Result<Role> {
    let mut role = Role::Field;
    for attr in &field.attrs {
        if !attr.path().is_ident("module") {
            continue;
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("buffer") {
                role = Role::Buffer;
                Ok(())
            } else if meta.path.is_ident("skip") {
                role = Role::Skip;
                Ok(())
            } else {
                Err(meta.error("expected `buffer` or `skip`"))
            }
        })?;
    }
    Ok(role)
}

/// Implement `wgrad::nn::Module` for a struct: `named_parameters`, `named_buffers`,
/// `train`/`eval`, `to_device`, `apply`, checkpoints and the rest follow from the visit it
/// writes. Attributes: `#[module(buffer)]` on a tensor field, `#[module(skip)]` on a field
/// that is neither state nor a submodule.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            name,
            "#[derive(Module)] needs a struct (its fields are the module's state)",
        ));
    };
    let mut visits = Vec::new();
    let mut visits_mut = Vec::new();
    let members: Vec<(syn::Member, String, &syn::Field)> = match &data.fields {
        Fields::Named(f) => f
            .named
            .iter()
            .map(|f| {
                let id = f.ident.clone().unwrap_or_else(|| format_ident!("_"));
                (syn::Member::Named(id.clone()), id.to_string(), f)
            })
            .collect(),
        Fields::Unnamed(f) => f
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| (syn::Member::Unnamed(Index::from(i)), i.to_string(), f))
            .collect(),
        Fields::Unit => Vec::new(),
    };
    for (member, label, field) in members {
        // Rust's raw identifiers (`r#type`) name the field `type` in the state.
        let label = label.trim_start_matches("r#").to_string();
        match role(field)? {
            Role::Skip => {}
            Role::Field => {
                visits.push(quote! {
                    ::wgrad::nn::Field::visit_field(&self.#member, &::wgrad::nn::join(prefix, #label), f);
                });
                visits_mut.push(quote! {
                    ::wgrad::nn::Field::visit_field_mut(&mut self.#member, &::wgrad::nn::join(prefix, #label), f);
                });
            }
            Role::Buffer => {
                visits.push(quote! {
                    ::wgrad::nn::BufferField::visit_buffer(&self.#member, &::wgrad::nn::join(prefix, #label), f);
                });
                visits_mut.push(quote! {
                    ::wgrad::nn::BufferField::visit_buffer_mut(&mut self.#member, &::wgrad::nn::join(prefix, #label), f);
                });
            }
        }
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::wgrad::nn::Module for #name #ty_generics #where_clause {
            fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, ::wgrad::nn::Item<'_>)) {
                #(#visits)*
            }
            fn visit_mut(&mut self, prefix: &str, f: &mut dyn FnMut(&str, ::wgrad::nn::ItemMut<'_>)) {
                #(#visits_mut)*
                f(prefix, ::wgrad::nn::ItemMut::Module(self));
            }
        }
    })
}
