/* Gray decoding of a region of a baseline or progressive JPEG with libjpeg(-turbo): rows above the
 * region are entropy-decoded only (jpeg_skip_scanlines), columns outside it are not inverse-transformed
 * (jpeg_crop_scanline), rows below it are not read at all. libjpeg reports errors by longjmp, which
 * must not cross Rust frames: this file is the only place that sees it. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>

struct guard {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char *msg;
    size_t msg_len;
};

static void on_error(j_common_ptr c) {
    struct guard *g = (struct guard *)c->err;
    char text[JMSG_LENGTH_MAX];
    (*c->err->format_message)(c, text);
    snprintf(g->msg, g->msg_len, "%s", text);
    longjmp(g->jump, 1);
}

/* Warnings (e.g. extraneous bytes before a marker) are tolerated, as GStreamer's jpegdec tolerates
 * them, so that both decoders give the same frames; they are not printed. */
static void on_warning(j_common_ptr c, int level) {
    (void)c;
    (void)level;
}

/* Width and height from the header. Returns 0 on success. */
int aullm_jpeg_dims(const unsigned char *data, unsigned long len, int *width, int *height,
                    char *msg, size_t msg_len) {
    struct jpeg_decompress_struct c;
    struct guard g;
    c.err = jpeg_std_error(&g.mgr);
    g.mgr.error_exit = on_error;
    g.msg = msg;
    g.msg_len = msg_len;
    if (setjmp(g.jump)) {
        jpeg_destroy_decompress(&c);
        return -1;
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, data, len);
    jpeg_read_header(&c, TRUE);
    *width = (int)c.image_width;
    *height = (int)c.image_height;
    jpeg_destroy_decompress(&c);
    return 0;
}

/* Decodes at least columns [*x0, *x1) of rows [y0, y1) as 8-bit gray into `out`, at 1/`denom` of
 * the frame's size (denom 1, 2, 4 or 8: libjpeg scales in the DCT domain). `out` holds the scaled
 * frame's rows packed; coordinates are in the scaled frame. The column range grows to whole iMCU
 * blocks; the range decoded is written back. Returns 0 on success. */
int aullm_jpeg_decode_gray(const unsigned char *data, unsigned long len, unsigned char *out,
                           int width, int height, int denom, int *x0, int *x1, int y0, int y1,
                           char *msg, size_t msg_len) {
    struct jpeg_decompress_struct c;
    struct guard g;
    c.err = jpeg_std_error(&g.mgr);
    g.mgr.error_exit = on_error;
    g.mgr.emit_message = on_warning;
    g.msg = msg;
    g.msg_len = msg_len;
    if (setjmp(g.jump)) {
        jpeg_destroy_decompress(&c);
        return -1;
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, data, len);
    jpeg_read_header(&c, TRUE);
    if ((int)c.image_width != width || (int)c.image_height != height) {
        snprintf(msg, msg_len, "frame is %ux%u, the stream %dx%d", c.image_width, c.image_height,
                 width, height);
        jpeg_destroy_decompress(&c);
        return -1;
    }
    c.out_color_space = JCS_GRAYSCALE;
    c.dct_method = JDCT_IFAST; /* GStreamer jpegdec's default (idct-method=ifast): same pixels */
    c.scale_num = 1;
    c.scale_denom = (unsigned int)denom;
    jpeg_start_decompress(&c);
    size_t stride = (size_t)c.output_width;
    if (*x0 < 0 || *x0 >= *x1 || *x1 > (int)c.output_width || y0 < 0 || y1 > (int)c.output_height) {
        snprintf(msg, msg_len, "region [%d, %d) x [%d, %d) outside the %ux%u output", *x0, *x1, y0,
                 y1, c.output_width, c.output_height);
        jpeg_abort_decompress(&c);
        jpeg_destroy_decompress(&c);
        return -1;
    }
    JDIMENSION xo = (JDIMENSION)*x0, wo = (JDIMENSION)(*x1 - *x0);
    if (xo > 0 || wo < c.output_width) jpeg_crop_scanline(&c, &xo, &wo);
    *x0 = (int)xo;
    *x1 = (int)(xo + wo);
    if (y0 > 0) jpeg_skip_scanlines(&c, (JDIMENSION)y0);
    while ((int)c.output_scanline < y1) {
        JSAMPROW row = out + (size_t)c.output_scanline * stride + xo;
        jpeg_read_scanlines(&c, &row, 1);
    }
    if (c.output_scanline == c.output_height)
        jpeg_finish_decompress(&c);
    else
        jpeg_abort_decompress(&c);
    jpeg_destroy_decompress(&c);
    return 0;
}
