#version 330 core
// A light replacement for pyrender's PBR mesh.frag: Lambert diffuse + Blinn-Phong highlight, ambient,
// directional and point lights. Same uniform names as mesh.frag, so pyrender binds them unchanged.
// On Mesa llvmpipe the PBR shader, run per MSAA sample, is most of the frame time (docs/rendering.md).
struct DirectionalLight { vec3 color; float intensity; vec3 direction; };
struct PointLight { vec3 color; float intensity; float range; vec3 position; };
struct SpotLight { vec3 color; float intensity; float range; vec3 position; vec3 direction;
                   float light_angle_scale; float light_angle_offset; };

struct Material {
    vec3 emissive_factor;
#ifdef USE_METALLIC_MATERIAL
    vec4 base_color_factor;
    float metallic_factor;
    float roughness_factor;
#endif
#ifdef USE_GLOSSY_MATERIAL
    vec4 diffuse_factor;
    vec3 specular_factor;
    float glossiness_factor;
#endif
#ifdef HAS_BASE_COLOR_TEX
    sampler2D base_color_texture;
#endif
#ifdef HAS_DIFFUSE_TEX
    sampler2D diffuse_texture;
#endif
};

uniform Material material;
uniform PointLight point_lights[MAX_POINT_LIGHTS];
uniform int n_point_lights;
uniform DirectionalLight directional_lights[MAX_DIRECTIONAL_LIGHTS];
uniform int n_directional_lights;
uniform SpotLight spot_lights[MAX_SPOT_LIGHTS];
uniform int n_spot_lights;
uniform vec3 cam_pos;
uniform vec3 ambient_light;

in vec3 frag_position;
in vec3 obj_position;
#ifdef NORMAL_LOC
in vec3 frag_normal;
in vec3 obj_normal;
#endif
#ifdef TEXCOORD_0_LOC
in vec2 uv_0;
#endif
#ifdef COLOR_0_LOC
in vec4 color_multiplier;
#endif

out vec4 frag_color;

#ifdef HAS_BASE_COLOR_TEX
vec4 base_texture()
{
#ifdef TEXCOORD_0_LOC
    return texture(material.base_color_texture, uv_0);
#else
    // No UVs (procedural meshes): triplanar projection in object space, 4 repeats per unit length.
    vec3 w = abs(obj_normal);
    w = w / (w.x + w.y + w.z + 1e-5);
    vec3 p = obj_position * 4.0;
    return texture(material.base_color_texture, p.yz) * w.x
         + texture(material.base_color_texture, p.xz) * w.y
         + texture(material.base_color_texture, p.xy) * w.z;
#endif
}
#endif

void main()
{
#ifdef USE_METALLIC_MATERIAL
    vec4 base = material.base_color_factor;
    float rough = material.roughness_factor;
#else
    vec4 base = vec4(1.0);
    float rough = 1.0;
#endif
#ifdef HAS_BASE_COLOR_TEX
    base *= base_texture();
#endif
#ifdef COLOR_0_LOC
    base *= color_multiplier;
#endif
    vec3 color = ambient_light * base.rgb + material.emissive_factor;
#ifdef NORMAL_LOC
    vec3 n = normalize(frag_normal);
    vec3 v = normalize(cam_pos - frag_position);
    if (dot(n, v) < 0.0) n = -n;  // back faces of open meshes light like front faces
    float shininess = mix(64.0, 4.0, rough);
    float spec_weight = 0.5 * (1.0 - rough);
    for (int i = 0; i < n_directional_lights; i++) {
        vec3 l = normalize(-directional_lights[i].direction);
        vec3 radiance = directional_lights[i].color * directional_lights[i].intensity;
        float nl = max(dot(n, l), 0.0);
        float nh = max(dot(n, normalize(l + v)), 0.0);
        color += radiance * (base.rgb * nl + spec_weight * pow(nh, shininess) * step(0.0, nl));
    }
    for (int i = 0; i < n_point_lights; i++) {
        vec3 d = point_lights[i].position - frag_position;
        float dist2 = max(dot(d, d), 1e-4);
        vec3 l = d * inversesqrt(dist2);
        vec3 radiance = point_lights[i].color * point_lights[i].intensity / dist2;
        float nl = max(dot(n, l), 0.0);
        float nh = max(dot(n, normalize(l + v)), 0.0);
        color += radiance * (base.rgb * nl + spec_weight * pow(nh, shininess) * step(0.0, nl));
    }
#else
    color += base.rgb;
#endif
    // Opaque objects write alpha 1 over a clear alpha of 0: after the MSAA resolve, alpha is the pixel
    // coverage, which composites anti-aliased edges over any background.
    frag_color = vec4(clamp(color, 0.0, 1.0), 1.0);
}
