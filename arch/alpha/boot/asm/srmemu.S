# The SRM-entry emulation (src/bin/srmemu.rs): QEMU's -kernel, entered
# from qemu-palcode like the kernel (OSF/1 PALcode, IPL 7, $18 = the
# console PCB's physical address). It rebuilds the state an SRM console
# leaves for a bootstrap and jumps into the image (docs/hardware.md §1d).

	.set noreorder
	.set noat

#define LEAF(name) .align 4; .globl name; .type name, @function; name:
#define END(name) .size name, . - name

	.section .text.start, "ax"
	.globl _start
	.type _start, @function
_start:
	br	$27, 1f
1:	ldgp	$29, 0($27)
	lda	$30, emu_stack_top
	mov	$18, $16			# console PCB (physical)
	jsr	$26, srmemu_main
	call_pal 0x00
	.size _start, . - _start

	.text

# emu_enter(sp, pc, pcb, pcb_kseg, ptbr_after): make the PCB at physical
# `pcb` current (swpctx), store `ptbr_after` into its PTBR field in memory
# (the same value unless a test wants a console PCB that names another
# page table; the live PTBR is not changed by the store), then jump to the
# image's first byte the way a console would, with $30 = sp and every
# other register holding garbage (SRM promises nothing else), at the
# current IPL (7).
LEAF(emu_enter)
	mov	$16, $9
	mov	$17, $10
	mov	$19, $11
	mov	$20, $12
	mov	$18, $16
	call_pal 0x30			# swpctx (loads $30 from the PCB: replaced below)
	stq	$12, 0x10($11)
	mb
	mov	$9, $30
	mov	$10, $28
	ldah	$1, 0x5a5a($31)
	lda	$1, 0x5a5a($1)
	sll	$1, 32, $2
	or	$1, $2, $1
	mov	$1, $0
	mov	$1, $2
	mov	$1, $3
	mov	$1, $4
	mov	$1, $5
	mov	$1, $6
	mov	$1, $7
	mov	$1, $8
	mov	$1, $9
	mov	$1, $10
	mov	$1, $11
	mov	$1, $12
	mov	$1, $13
	mov	$1, $14
	mov	$1, $15
	mov	$1, $16
	mov	$1, $17
	mov	$1, $18
	mov	$1, $19
	mov	$1, $20
	mov	$1, $21
	mov	$1, $22
	mov	$1, $23
	mov	$1, $24
	mov	$1, $25
	mov	$1, $26
	mov	$1, $27
	mov	$1, $29
	jmp	$31, ($28)
END(emu_enter)

LEAF(emu_wrvptptr)			# a0 = new VPTB
	call_pal 0x2d
	ret	$31, ($26), 1
END(emu_wrvptptr)

LEAF(emu_tbia)
	lda	$16, -2($31)
	call_pal 0x33
	ret	$31, ($26), 1
END(emu_tbia)

LEAF(emu_halt)
	call_pal 0x00
	br	$31, emu_halt
END(emu_halt)

# The console's callback dispatcher as this emulation extends it: GET_ENV
# (0x22) of BOOTED_OSFLAGS (8) answers with the flags given to `boot`,
# which qemu-palcode cannot; every other PUTS is refused as "not ready";
# every other call goes on to qemu-palcode's own dispatcher. OpenVMS calling standard (docs/hardware.md §3): $27 = our
# descriptor, $16 = code, $17.. = arguments; result in $0; $2-$15 and $30
# preserved, so only $0, $1, $16-$25, $27 and $28 are used here. Data is
# reached PC-relative through local labels (a global symbol's difference
# would become a GOT load).
	.align 4
	.globl emu_crb
emu_crb:
	br	$1, 1f
	# PUTS (0x02): every other call answers status 100, "terminal not
	# ready, nothing written", as a console whose PUTS writes straight to
	# a busy UART does; the caller must ask again.
1:	cmpeq	$16, 0x02, $0
	beq	$0, 6f
	lda	$22, .Ltnr-1b($1)
	ldq	$23, 0($22)
	xor	$23, 1, $23
	stq	$23, 0($22)
	beq	$23, 6f
	lda	$0, 1($31)
	sll	$0, 63, $0			# status 100, count 0
	ret	$31, ($26), 1
6:	cmpeq	$16, 0x22, $0
	bne	$0, 2f
	lda	$27, .Lnext-1b($1)
	ldq	$27, 0($27)			# qemu-palcode's descriptor
	ldq	$28, 8($27)
	jmp	$31, ($28)			# tail call: returns to our caller
2:	cmpeq	$17, 8, $0
	beq	$0, 5f
	lda	$0, .Lenv_len-1b($1)
	ldq	$0, 0($0)
	lda	$22, .Lenv-1b($1)
	cmpult	$19, $0, $23			# buffer shorter than the text?
	cmovne	$23, $19, $0
	mov	$0, $24
3:	beq	$24, 4f
	ldbu	$23, 0($22)
	stb	$23, 0($18)
	lda	$22, 1($22)
	lda	$18, 1($18)
	lda	$24, -1($24)
	br	$31, 3b
4:	ret	$31, ($26), 1			# status 0, count in bits 31:0
5:	lda	$0, 3($31)
	sll	$0, 62, $0			# status 6: unsupported, as qemu-palcode answers
	ret	$31, ($26), 1
	.align 3
	# The procedure descriptor that the CRB's dispatch_va points at.
	.globl emu_crb_desc
emu_crb_desc:
	.quad	0, emu_crb
	.globl emu_crb_next
emu_crb_next:
.Lnext:
	.quad	0
.Ltnr:
	.quad	0
	.globl emu_env_len
emu_env_len:
.Lenv_len:
	.quad	0
	.globl emu_env
emu_env:
.Lenv:
	.skip	256

	.section .bss
	.align 4
emu_stack:
	.skip	65536
	.globl emu_stack_top
emu_stack_top:
