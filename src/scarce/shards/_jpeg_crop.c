/* Crop-window JPEG decoding with libjpeg-turbo (scarce.shards._jpeg_crop).
 *
 * The same calls as TensorFlow's tf.io.decode_and_crop_jpeg: jpeg_skip_scanlines() jumps to the first row of
 * the window, jpeg_crop_scanline() limits the IDCT, upsampling and colour conversion to the window's columns
 * (widened to iMCU boundaries), and decoding stops after the window's last row. DCT scaling (1/2, 1/4, 1/8)
 * comes from libjpeg's scale_denom. No Python library exposes these calls (simplejpeg and PyTurboJPEG decode
 * whole images; TurboJPEG 3's tj3SetCroppingRegion is not in Debian 12's libturbojpeg 2.1.5), hence this module.
 *
 * Exactness: libjpeg.txt ("Partial image decompression") says a partial-width decode equals the full decode
 * except the left and right edge columns of the decoded region under "fancy" 4:2:0 / 4:2:2 chroma upsampling,
 * which treats them as image edges. The window asked of libjpeg is therefore one pixel wider on each side
 * (inside the image) than the window returned, so every returned pixel is an interior one. libjpeg writes
 * the decoded rows straight into the caller's array (rows wide enough for the iMCU alignment); the caller
 * takes the window as a view, so no pixel is copied.
 * tests/test_jpeg_crop.py checks byte equality with full decode + crop on real JPEGs.
 *
 * The GIL is released while libjpeg runs, so a thread pool scales over cores.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>

#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} error_manager;

static void on_error(j_common_ptr cinfo) {
    error_manager *err = (error_manager *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* Corrupt-data warnings are not errors here (simplejpeg's strict=False): a recoverable JPEG decodes. */
static void on_message(j_common_ptr cinfo, int msg_level) {
    (void)cinfo;
    (void)msg_level;
}

/* Decode rows [y, y + h) and columns [x, x + w) of the image scaled by 1 / scale_denom into out: h rows of
 * stride pixels (RGB), the window starting *margin_left pixels into each row (libjpeg writes the whole decoded
 * region, which starts on an iMCU boundary, straight into out: no copy). Returns NULL on success, else the
 * libjpeg message (copied into err->message). */
static const char *decode_window(const unsigned char *data, size_t size, unsigned int x, unsigned int y,
                                 unsigned int w, unsigned int h, unsigned int stride, unsigned int scale_denom,
                                 int fast_dct, unsigned char *out, unsigned int *margin_left,
                                 error_manager *err) {
    struct jpeg_decompress_struct cinfo;
    JSAMPROW rows[16];
    unsigned int row, got, n;
    JDIMENSION xoffset, width;
    const unsigned int chunk = 16;

    cinfo.err = jpeg_std_error(&err->pub);
    err->pub.error_exit = on_error;
    err->pub.emit_message = on_message;
    err->message[0] = '\0';
    if (setjmp(err->jump)) {
        jpeg_destroy_decompress(&cinfo);
        return err->message;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    cinfo.out_color_space = JCS_RGB;
    cinfo.dct_method = fast_dct ? JDCT_IFAST : JDCT_ISLOW;
    cinfo.scale_num = 1;
    cinfo.scale_denom = scale_denom;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3 || (JDIMENSION)x + w > cinfo.output_width ||
        (JDIMENSION)y + h > cinfo.output_height || w == 0 || h == 0) {
        snprintf(err->message, JMSG_LENGTH_MAX, "window x=%u y=%u w=%u h=%u outside the %ux%u decoded image", x, y,
                 w, h, (unsigned int)cinfo.output_width, (unsigned int)cinfo.output_height);
        jpeg_destroy_decompress(&cinfo);
        return err->message;
    }
    /* One interior pixel of margin on each side (see the header comment). */
    xoffset = x > 0 ? x - 1 : 0;
    width = (x + w < cinfo.output_width ? x + w + 1 : cinfo.output_width) - xoffset;
    if (xoffset > 0 || width < cinfo.output_width)
        jpeg_crop_scanline(&cinfo, &xoffset, &width);
    *margin_left = x - xoffset;
    if (cinfo.output_width > stride) {
        snprintf(err->message, JMSG_LENGTH_MAX, "decoded region %u pixels wide exceeds the row stride %u",
                 (unsigned int)cinfo.output_width, stride);
        jpeg_destroy_decompress(&cinfo);
        return err->message;
    }
    if (y > 0)
        jpeg_skip_scanlines(&cinfo, y);
    for (row = 0; row < h; row += got) {
        n = h - row < chunk ? h - row : chunk;
        for (unsigned int k = 0; k < n; k++)
            rows[k] = out + (size_t)(row + k) * stride * 3;
        got = jpeg_read_scanlines(&cinfo, rows, n);
        if (got == 0) {
            snprintf(err->message, JMSG_LENGTH_MAX, "no data for row %u of the window", y + row);
            jpeg_destroy_decompress(&cinfo);
            return err->message;
        }
    }
    /* The rows below the window are never decoded: abort instead of jpeg_finish_decompress. */
    jpeg_destroy_decompress(&cinfo);
    return NULL;
}

PyDoc_STRVAR(decode_crop_doc,
"decode_crop(data, out, x, y, width, scale_denom=1, fast_dct=True) -> margin\n--\n\n"
"Decode the ``width`` columns from (``x``, ``y``) of JPEG ``data`` into ``out``, a writable C-contiguous "
"uint8 buffer of shape (h, stride, 3): h rows are decoded, each written from the iMCU boundary left of the "
"window, so the window is ``out[:, margin:margin + width]``; ``stride`` must hold ``width`` plus the "
"alignment (``width + 2 + 2 * 32`` always does). Coordinates are in the image scaled by 1 / "
"``scale_denom`` (1, 2, 4 or 8). RGB output; ``fast_dct``: libjpeg's fast integer IDCT (TensorFlow's "
"default). Raises ValueError with libjpeg's message.");

static PyObject *decode_crop(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"data", "out", "x", "y", "width", "scale_denom", "fast_dct", NULL};
    Py_buffer data, out;
    PyObject *out_obj;
    unsigned int x, y, w, scale_denom = 1, h, stride, margin = 0;
    int fast_dct = 1;
    const char *failure;
    error_manager err;
    (void)self;

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*OIII|Ip", keywords, &data, &out_obj, &x, &y, &w,
                                     &scale_denom, &fast_dct))
        return NULL;
    if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&data);
        return NULL;
    }
    if (scale_denom != 1 && scale_denom != 2 && scale_denom != 4 && scale_denom != 8) {
        PyErr_Format(PyExc_ValueError, "scale_denom must be 1, 2, 4 or 8, got %u", scale_denom);
        goto fail;
    }
    if (out.ndim != 3 || out.shape[2] != 3 || out.itemsize != 1) {
        PyErr_SetString(PyExc_ValueError, "out must be a C-contiguous (h, w, 3) uint8 array");
        goto fail;
    }
    h = (unsigned int)out.shape[0];
    stride = (unsigned int)out.shape[1];
    if (w > stride) {
        PyErr_Format(PyExc_ValueError, "out rows hold %u pixels, fewer than the window's %u", stride, w);
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    failure = decode_window((const unsigned char *)data.buf, (size_t)data.len, x, y, w, h, stride, scale_denom,
                            fast_dct, (unsigned char *)out.buf, &margin, &err);
    Py_END_ALLOW_THREADS
    if (failure != NULL) {
        PyErr_SetString(PyExc_ValueError, failure);
        goto fail;
    }
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return PyLong_FromUnsignedLong(margin);
fail:
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"decode_crop", (PyCFunction)(void (*)(void))decode_crop, METH_VARARGS | METH_KEYWORDS, decode_crop_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_jpeg_crop", "Crop-window JPEG decoding with libjpeg-turbo.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__jpeg_crop(void) {
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "LIBJPEG_TURBO_VERSION_NUMBER",
#ifdef LIBJPEG_TURBO_VERSION_NUMBER
                                             LIBJPEG_TURBO_VERSION_NUMBER
#else
                                             0
#endif
                                             ) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
