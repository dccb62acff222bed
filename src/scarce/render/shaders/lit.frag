#version 330 core
// Colour = base (material factor x texture x vertex colour) x interpolated light + highlight; the lighting
// itself is per vertex (lit.vert). Same uniform names as pyrender's mesh.frag.
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
#ifdef HAS_BASE_COLOR_TEX
// Triplanar repeats per unit of object-space length (set per material by scarce's renderer).
uniform float texture_scale;
#endif

in vec3 obj_position;
in vec3 obj_normal;
in vec3 light_diffuse;
in vec3 light_specular;
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
    // No UVs (procedural meshes): triplanar projection in object space, texture_scale repeats per unit length.
    vec3 w = abs(obj_normal);
    w = w / (w.x + w.y + w.z + 1e-5);
    vec3 p = obj_position * texture_scale;
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
#else
    vec4 base = vec4(1.0);
#endif
#ifdef HAS_BASE_COLOR_TEX
    base *= base_texture();
#endif
#ifdef COLOR_0_LOC
    base *= color_multiplier;
#endif
    vec3 color = base.rgb * light_diffuse + light_specular + material.emissive_factor;
    // Opaque objects write alpha 1 over a clear alpha of 0: after the MSAA resolve, alpha is the pixel
    // coverage, which composites anti-aliased edges over any background.
    frag_color = vec4(clamp(color, 0.0, 1.0), 1.0);
}
