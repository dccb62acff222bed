#version 330 core
// Per-vertex (Gouraud) lighting: Lambert diffuse + Blinn-Phong highlight from ambient, directional and point
// lights, with pyrender's uniform names so it binds them unchanged. On Mesa llvmpipe per-fragment lighting
// (per MSAA sample) cost about a quarter of the frame; vertices are far fewer than covered samples.
layout(location = 0) in vec3 position;
#ifdef NORMAL_LOC
layout(location = NORMAL_LOC) in vec3 normal;
#endif
#ifdef TANGENT_LOC
layout(location = TANGENT_LOC) in vec4 tangent;
#endif
#ifdef TEXCOORD_0_LOC
layout(location = TEXCOORD_0_LOC) in vec2 texcoord_0;
#endif
#ifdef TEXCOORD_1_LOC
layout(location = TEXCOORD_1_LOC) in vec2 texcoord_1;
#endif
#ifdef COLOR_0_LOC
layout(location = COLOR_0_LOC) in vec4 color_0;
#endif
#ifdef JOINTS_0_LOC
layout(location = JOINTS_0_LOC) in vec4 joints_0;
#endif
#ifdef WEIGHTS_0_LOC
layout(location = WEIGHTS_0_LOC) in vec4 weights_0;
#endif
layout(location = INST_M_LOC) in mat4 inst_m;

struct DirectionalLight { vec3 color; float intensity; vec3 direction; };
struct PointLight { vec3 color; float intensity; float range; vec3 position; };

uniform mat4 M;
uniform mat4 V;
uniform mat4 P;
uniform PointLight point_lights[MAX_POINT_LIGHTS];
uniform int n_point_lights;
uniform DirectionalLight directional_lights[MAX_DIRECTIONAL_LIGHTS];
uniform int n_directional_lights;
uniform vec3 cam_pos;
uniform vec3 ambient_light;
// Must match lit.frag's Material exactly (one uniform across both stages).
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
};
uniform Material material;

out vec3 obj_position;
out vec3 obj_normal;
out vec3 light_diffuse;   // multiplies the base colour
out vec3 light_specular;  // added on top
#ifdef TEXCOORD_0_LOC
out vec2 uv_0;
#endif
#ifdef COLOR_0_LOC
out vec4 color_multiplier;
#endif

void main()
{
    mat4 MI = M * inst_m;
    vec4 world = MI * vec4(position, 1.0);
    gl_Position = P * V * world;
    obj_position = position;
    light_diffuse = ambient_light;
    light_specular = vec3(0.0);
#ifdef NORMAL_LOC
    obj_normal = normal;
    // Uniform scale only (scarce never shears), so the upper 3x3 keeps normals' directions.
    vec3 n = normalize(mat3(MI) * normal);
    vec3 v = normalize(cam_pos - world.xyz);
    if (dot(n, v) < 0.0) n = -n;  // back faces of open meshes light like front faces
#ifdef USE_METALLIC_MATERIAL
    float rough = material.roughness_factor;
#else
    float rough = 1.0;
#endif
    float shininess = mix(64.0, 4.0, rough);
    float spec_weight = 0.5 * (1.0 - rough);
    for (int i = 0; i < n_directional_lights; i++) {
        vec3 l = normalize(-directional_lights[i].direction);
        vec3 radiance = directional_lights[i].color * directional_lights[i].intensity;
        float nl = max(dot(n, l), 0.0);
        light_diffuse += radiance * nl;
        if (nl > 0.0) light_specular += radiance * spec_weight * pow(max(dot(n, normalize(l + v)), 0.0), shininess);
    }
    for (int i = 0; i < n_point_lights; i++) {
        vec3 d = point_lights[i].position - world.xyz;
        float dist2 = max(dot(d, d), 1e-4);
        vec3 l = d * inversesqrt(dist2);
        vec3 radiance = point_lights[i].color * point_lights[i].intensity / dist2;
        float nl = max(dot(n, l), 0.0);
        light_diffuse += radiance * nl;
        if (nl > 0.0) light_specular += radiance * spec_weight * pow(max(dot(n, normalize(l + v)), 0.0), shininess);
    }
#else
    obj_normal = vec3(0.0, 0.0, 1.0);
    light_diffuse = vec3(1.0);  // unlit geometry (no normals) shows its colour
#endif
#ifdef TEXCOORD_0_LOC
    uv_0 = texcoord_0;
#endif
#ifdef COLOR_0_LOC
    color_multiplier = color_0;
#endif
}
