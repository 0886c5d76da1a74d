//! Every WGSL file parses, validates, and translates to SPIR-V, MSL, HLSL and GLSL for
//! every entry point, with its override constants resolved the ways the launchers
//! resolve them. A shader that cannot reach Metal, DX12 or GL fails here, on any machine.

use naga::back::PipelineConstants as Constants;

use naga::back::{glsl, hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use vqvae_wgpu::kernels::unrolled;
use vqvae_wgpu::shaders;

/// Tiles the generated kernels are checked at: the register defaults and odd ones, the
/// GEMM's also with A's rows shared across subgroups of 8 and 16 and with vec4 stores,
/// the search's with its codes shared across subgroups of 8.
const GEMM_TILES: [(u32, u32, Option<u32>, bool); 6] = [
    (16, 3, None, false),
    (3, 2, None, false),
    (16, 3, Some(8), false),
    (16, 2, Some(16), false),
    (16, 3, Some(8), true),
    (3, 2, None, true),
];
const SEARCH_TILES: [(u32, u32, Option<u32>); 3] = [(16, 8, None), (3, 5, None), (16, 8, Some(8))];
/// Output channels and columns per thread of the sub-pixel transposed convolution: the
/// launcher's, and the fewest and most channels at an odd width.
const SUBPIXEL_TILES: [(u32, u32); 3] = [(3, 16), (1, 3), (4, 3)];

/// A module to translate: its name, its text, the entry point to translate (`None`:
/// all), and whether it uses subgroup operations (which GL never gets, and HLSL has
/// from shader model 6.0).
struct Module {
    name: String,
    source: String,
    only: Option<&'static str>,
    subgroups: bool,
}

/// The generated modules, each with the file it extends.
fn generated() -> Vec<(Module, &'static shaders::Shader)> {
    let gemms = GEMM_TILES
        .iter()
        .map(|&(rows, cols4, subgroup, vec4_stores)| {
            let gemm = unrolled::Gemm {
                rows,
                cols4,
                subgroup,
                vec4_stores,
            };
            let module = Module {
                name: gemm.module_name(),
                source: gemm.source(),
                only: Some("gemm_reg"),
                subgroups: subgroup.is_some(),
            };
            (module, &shaders::CONV)
        });
    let searches = SEARCH_TILES.iter().map(|&(rows, codes, subgroup)| {
        let module = Module {
            name: unrolled::nearest_module_name(rows, codes, subgroup),
            source: unrolled::nearest_source(rows, codes, subgroup),
            only: Some("nearest_packed"),
            subgroups: subgroup.is_some(),
        };
        (module, &shaders::QUANTIZE)
    });
    let subpixels = SUBPIXEL_TILES.iter().map(|&(outputs, cols)| {
        let module = Module {
            name: unrolled::subpixel_module_name(outputs, cols),
            source: unrolled::subpixel_source(outputs, cols),
            only: Some("subpixel"),
            subgroups: false,
        };
        (module, &shaders::SUBPIXEL)
    });
    gemms.chain(searches).chain(subpixels).collect()
}

/// What to translate: every file (all its entry points), and the generated modules
/// (their own entry point; the rest is the file they extend, translated already, but for
/// `subpixel.wgsl`, whose one entry point is all generated).
fn modules() -> Vec<Module> {
    let files = shaders::ALL
        .iter()
        .filter(|s| s.name != shaders::SUBPIXEL.name);
    let files = files.map(|s| Module {
        name: s.name.to_string(),
        source: s.source.to_string(),
        only: None,
        subgroups: s.source.contains("@builtin(subgroup"),
    });
    files
        .chain(generated().into_iter().map(|(module, _)| module))
        .collect()
}

fn pick(large: bool, small_value: f64, large_value: f64) -> f64 {
    if large { large_value } else { small_value }
}

/// Override assignments to try: every MODE, every bool off and on, small and large
/// workgroups (the register and shared tunings).
fn configurations(module: &naga::Module) -> Vec<Constants> {
    let names: Vec<(String, bool)> = module
        .overrides
        .iter()
        .filter_map(|(_, o)| {
            let is_bool = matches!(module.types[o.ty].inner, naga::TypeInner::Scalar(s) if s == naga::Scalar::BOOL);
            o.name.clone().map(|n| (n, is_bool))
        })
        .collect();
    let modes: &[f64] = if names.iter().any(|(n, _)| n == "MODE") {
        &[0.0, 1.0, 2.0]
    } else {
        &[0.0]
    };
    let mut configs = Vec::new();
    for &mode in modes {
        for flag in [false, true] {
            for large in [false, true] {
                let mut c = Constants::default();
                for (name, is_bool) in &names {
                    let value = match name.as_str() {
                        "MODE" => mode,
                        "WG_X" | "WG_Y" => pick(large, 8.0, 16.0),
                        "WG" => pick(large, 64.0, 256.0),
                        "TM" | "TR" => pick(large, 4.0, 8.0),
                        "TN" => pick(large, 4.0, 12.0),
                        _ if *is_bool => f64::from(u8::from(flag)),
                        _ => continue,
                    };
                    c.insert(name.clone(), value);
                }
                configs.push(c);
            }
        }
    }
    configs
}

#[test]
fn every_shader_translates_to_every_backend() {
    let mut translated = 0;
    for Module {
        name,
        source,
        only,
        subgroups,
    } in modules()
    {
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string_with_path(&source, &name)));
        let info = Validator::new(ValidationFlags::all(), Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
        let entries = module
            .entry_points
            .iter()
            .filter(|ep| only.is_none_or(|o| ep.name == o));
        for ep in entries {
            for constants in configurations(&module) {
                let what = format!("{name}::{} with {constants:?}", ep.name);
                let (m, i) = naga::back::pipeline_constants::process_overrides(
                    &module,
                    &info,
                    Some((ep.stage, &ep.name)),
                    &constants,
                )
                .unwrap_or_else(|e| panic!("{what}: overrides: {e}"));
                let (m, i) = (m.as_ref(), i.as_ref());

                let spv_pipeline = spv::PipelineOptions {
                    shader_stage: ep.stage,
                    entry_point: ep.name.clone(),
                };
                spv::write_vec(m, i, &spv::Options::default(), Some(&spv_pipeline))
                    .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));

                let msl_pipeline = msl::PipelineOptions {
                    entry_point: Some((ep.stage, ep.name.clone())),
                    ..Default::default()
                };
                msl::write_string(m, i, &msl::Options::default(), &msl_pipeline)
                    .unwrap_or_else(|e| panic!("{what}: MSL: {e}"));

                let hlsl_pipeline = hlsl::PipelineOptions {
                    entry_point: Some((ep.stage, ep.name.clone())),
                };
                let hlsl_options = hlsl::Options {
                    shader_model: if subgroups {
                        hlsl::ShaderModel::V6_0
                    } else {
                        hlsl::Options::default().shader_model
                    },
                    ..Default::default()
                };
                let mut out = String::new();
                hlsl::Writer::new(&mut out, &hlsl_options, &hlsl_pipeline)
                    .write(m, i, None)
                    .unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));

                if subgroups {
                    translated += 1;
                    continue;
                }
                let glsl_options = glsl::Options {
                    version: glsl::Version::Embedded {
                        version: 310,
                        is_webgl: false,
                    },
                    ..Default::default()
                };
                let glsl_pipeline = glsl::PipelineOptions {
                    shader_stage: ep.stage,
                    entry_point: ep.name.clone(),
                    multiview: None,
                };
                let mut out = String::new();
                glsl::Writer::new(
                    &mut out,
                    m,
                    i,
                    &glsl_options,
                    &glsl_pipeline,
                    naga::proc::BoundsCheckPolicies::default(),
                )
                .and_then(|mut w| w.write())
                .unwrap_or_else(|e| panic!("{what}: GLSL: {e}"));
                translated += 1;
            }
        }
    }
    // 14 shaders, over 40 entry points, several configurations each.
    assert!(
        translated >= 40 * 4,
        "only {translated} pipelines translated"
    );
}

/// Shader modules are created without wgpu's forced loop bounding (src/launch.rs), whose
/// contract is that no loop runs forever: every loop must be a counted `for` that rises to
/// a bound (`i++` or `i += step`) or halves down to zero, and no `loop` or `while` exists.
#[test]
fn every_loop_is_a_counted_for() {
    let mut loops = 0;
    // Each file as written (so that line numbers are the file's), the prelude, and what
    // the generators append to conv.wgsl and quantize.wgsl.
    let mut texts: Vec<(String, String)> = shaders::ALL
        .iter()
        .map(|s| {
            let own = s.source.strip_prefix(shaders::PRELUDE);
            let own = own.expect("every shader starts with the prelude");
            (format!("shaders/{}.wgsl", s.name), own.to_string())
        })
        .collect();
    texts.push(("shaders/prelude.wgsl".into(), shaders::PRELUDE.into()));
    for (module, file) in generated() {
        let own = module.source.strip_prefix(file.source);
        let own = own.expect("a generated module starts with the file it extends");
        texts.push((module.name, own.to_string()));
    }
    for (name, source) in &texts {
        for (n, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let words: Vec<&str> = code
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .collect();
            let at = format!("{name}:{}", n + 1);
            assert!(
                !words.contains(&"loop") && !words.contains(&"while"),
                "{at}: `loop` and `while` are not allowed: {line}"
            );
            let Some(header) = code.trim().strip_prefix("for (") else {
                continue;
            };
            let parts: Vec<&str> = header.split(';').map(str::trim).collect();
            let var = parts[0]
                .strip_prefix("var ")
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or_else(|| panic!("{at}: the loop must declare its counter: {line}"));
            let (cond, step) = (parts[1], parts[2]);
            let rising = cond.starts_with(&format!("{var} < "))
                && (step.starts_with(&format!("{var}++"))
                    || step.starts_with(&format!("{var} += ")));
            let halving =
                cond == format!("{var} > 0u") && step.starts_with(&format!("{var} /= 2u"));
            assert!(rising || halving, "{at}: not a counted loop: {line}");
            loops += 1;
        }
    }
    assert!(loops > 50, "found {loops} loops");
}
