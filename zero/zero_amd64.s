//go:build amd64 && !noasm

#include "textflag.h"

// Both variants OR vectors together and test the result once per step, so
// a zero page costs loads and ORs only, and a page whose first bytes are
// data returns after one step. The bytes after the last whole step are
// covered by 32- or 64-byte loads, the last of which ends at the last byte
// and may overlap bytes already checked. No load starts before p or ends
// after it (guard_linux_test.go checks this against PROT_NONE pages).

// func isZeroAVX2(p []byte) bool
TEXT ·isZeroAVX2(SB), NOSPLIT, $0-25
	MOVQ p_base+0(FP), SI
	MOVQ p_len+8(FP), CX
	CMPQ CX, $32
	JB   small
	LEAQ (SI)(CX*1), DI          // DI = end of p
	CMPQ CX, $256
	JB   tail
	LEAQ -256(DI), DX            // DX = last start of a whole 256-byte step

loop256:
	VMOVDQU (SI), Y1
	VMOVDQU 32(SI), Y2
	VMOVDQU 64(SI), Y3
	VMOVDQU 96(SI), Y4
	VPOR    128(SI), Y1, Y1
	VPOR    160(SI), Y2, Y2
	VPOR    192(SI), Y3, Y3
	VPOR    224(SI), Y4, Y4
	VPOR    Y2, Y1, Y1
	VPOR    Y4, Y3, Y3
	VPOR    Y3, Y1, Y1
	VPTEST  Y1, Y1
	JNZ     nonzero
	ADDQ    $256, SI
	CMPQ    SI, DX
	JBE     loop256

tail:
	// Fewer than 256 bytes left, at least 32 in p: the last 32 bytes,
	// then whole 32-byte steps up to them.
	VMOVDQU -32(DI), Y0
	LEAQ    -32(DI), DX

tailloop:
	CMPQ SI, DX
	JAE  last
	VPOR (SI), Y0, Y0
	ADDQ $32, SI
	JMP  tailloop

last:
	VPTEST Y0, Y0
	JNZ    nonzero
	VZEROUPPER
	MOVB   $1, ret+24(FP)
	RET

nonzero:
	VZEROUPPER
	MOVB $0, ret+24(FP)
	RET

small:
	// Fewer than 32 bytes: general registers only.
	CMPQ CX, $8
	JB   under8
	MOVQ -8(SI)(CX*1), AX        // the last 8 bytes

words:
	ORQ   (SI), AX
	ADDQ  $8, SI
	SUBQ  $8, CX
	CMPQ  CX, $8
	JAE   words
	TESTQ AX, AX
	SETEQ ret+24(FP)
	RET

under8:
	// 0..7 bytes: two overlapping loads cover 4..7 and 2..3 bytes.
	CMPQ  CX, $4
	JB    under4
	MOVL  (SI), AX
	ORL   -4(SI)(CX*1), AX
	TESTL AX, AX
	SETEQ ret+24(FP)
	RET

under4:
	CMPQ    CX, $2
	JB      under2
	MOVWLZX (SI), AX
	MOVWLZX -2(SI)(CX*1), BX
	ORL     BX, AX
	TESTL   AX, AX
	SETEQ   ret+24(FP)
	RET

under2:
	XORL    AX, AX
	TESTQ   CX, CX
	JZ      done
	MOVBLZX (SI), AX

done:
	TESTL AX, AX
	SETEQ ret+24(FP)
	RET

// func isZeroAVX512(p []byte) bool
TEXT ·isZeroAVX512(SB), NOSPLIT, $0-25
	MOVQ p_base+0(FP), SI
	MOVQ p_len+8(FP), CX
	CMPQ CX, $512
	JB   short
	LEAQ (SI)(CX*1), DI          // DI = end of p
	LEAQ -512(DI), DX            // DX = last start of a whole 512-byte step

loop512:
	VMOVDQU64 (SI), Z1
	VMOVDQU64 64(SI), Z2
	VMOVDQU64 128(SI), Z3
	VMOVDQU64 192(SI), Z4
	VPORQ     256(SI), Z1, Z1
	VPORQ     320(SI), Z2, Z2
	VPORQ     384(SI), Z3, Z3
	VPORQ     448(SI), Z4, Z4
	VPORQ     Z2, Z1, Z1
	VPORQ     Z4, Z3, Z3
	VPORQ     Z3, Z1, Z1
	VPTESTMQ  Z1, Z1, K1         // K1 = the 64-bit lanes of Z1 that are not zero
	KORTESTW  K1, K1
	JNZ       nonzero512
	ADDQ      $512, SI
	CMPQ      SI, DX
	JBE       loop512

	// Fewer than 512 bytes left: the last 64 bytes, then whole 64-byte
	// steps up to them.
	VMOVDQU64 -64(DI), Z0
	LEAQ      -64(DI), DX

tailloop512:
	CMPQ  SI, DX
	JAE   last512
	VPORQ (SI), Z0, Z0
	ADDQ  $64, SI
	JMP   tailloop512

last512:
	VPTESTMQ Z0, Z0, K1
	KORTESTW K1, K1
	JNZ      nonzero512
	VZEROUPPER
	MOVB     $1, ret+24(FP)
	RET

nonzero512:
	VZEROUPPER
	MOVB $0, ret+24(FP)
	RET

short:
	// Under 512 bytes: tail-call the AVX2 variant with the same arguments
	// (asmVariants offers this variant only with AVX2).
	JMP ·isZeroAVX2(SB)
