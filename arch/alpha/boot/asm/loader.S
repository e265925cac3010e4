# Stage-0 loader: the first bytes of the raw SRM image (docs/hardware.md
# §1d, §1e, §7).
#
# SRM maps the image at virtual 0x20000000 on its own page tables and
# jumps to byte 0 under its OpenVMS-flavoured PALcode, with nothing known
# about the registers but $30. So: skip the header, check that this really
# runs at the address it was linked for (else say so through the console
# callbacks and halt), establish gp, move to the loader's own stack inside
# the image, and call loader_main (src/bin/loader.rs).
#
# PAL calls before the switch: only SWPPAL (0x0A) and HALT (0x00), which
# both PALcode flavours share. The OSF/1 calls the loader needs afterwards
# (tbi, imb, swpipl, swpctx) are here too; Rust reaches them only through
# the token loader_swppal's success hands out.

	.set noreorder
	.set noat

#define LEAF(name) .align 4; .globl name; .type name, @function; name:
#define END(name) .size name, . - name

	.section .text.start, "ax"
	.globl _start
	.type _start, @function
_start:
	br	$31, 1f
	.long	0
	# The image header (alphasmp_srm::image::Header, HEADER_OFFSET 8):
	# magic and version here, the rest written by `cargo xtask image`.
	.globl image_header
image_header:
	.ascii	"ASMPBOOT"
	.quad	1
	.quad	0, 0, 0, 0, 0, 0, 0
1:	br	$27, 2f
2:	ldgp	$29, 0($27)
	# Where are we? $27 = the address label 2 runs at.
	ldah	$1, 0x2000($31)			# 0x20000000
	lda	$1, 2b-_start($1)
	cmpeq	$1, $27, $2
	beq	$2, wrong_place
	lda	$30, loader_stack_top
	jsr	$26, loader_main
	call_pal 0x00

# Not at 0x20000000: every absolute address (gp's GOT) is wrong, so print
# a fixed message with the console's PUTS, found from the HWRPB at its
# architected VA, using only PC-relative addresses; then halt to the console.
# The PUTS rule of arch/alpha/srm/src/crb.rs, by hand: a partial write goes
# on from where it stopped, status 100 ("terminal not ready", nothing
# written) is asked again, any other error ends it, and so does a bound on
# the number of calls. $9-$12 survive the calls (OpenVMS convention).
wrong_place:
	mov	$27, $9				# the actual address of label 2
	lda	$10, wrong_msg-2b($9)		# next byte to write
	lda	$11, wrong_msg_end-wrong_msg($31)	# bytes left
	ldah	$12, 0x10($31)			# calls left: 2^20
6:	beq	$11, 8f
	beq	$12, 8f
	subq	$12, 1, $12
	ldah	$1, 0x1000($31)			# HWRPB at VA 0x10000000
	ldq	$2, 0xc0($1)			# crb_offset
	addq	$1, $2, $2
	ldq	$27, 0($2)			# dispatch procedure descriptor
	ldq	$3, 8($27)			# its code address
	lda	$16, 2($31)			# PUTS
	mov	$31, $17			# unit 0
	mov	$10, $18
	mov	$11, $19
	lda	$25, 4($31)
	jsr	$26, ($3)
	srl	$0, 61, $1			# status, bits 63:61
	cmpeq	$1, 4, $2			# 100: not ready, ask again
	bne	$2, 6b
	srl	$0, 63, $2			# any other error: give up
	bne	$2, 8f
	zapnot	$0, 0x0f, $4			# count, bits 31:0
	cmpult	$11, $4, $2			# never more than was left
	cmovne	$2, $11, $4
	addq	$10, $4, $10
	subq	$11, $4, $11
	br	$31, 6b
8:	call_pal 0x00
	br	$31, 8b
	.align 3
wrong_msg:
	.ascii	"\r\nalphasmp loader: FAIL: not running at virtual 0x20000000 (the console must load this image there); halting\r\n"
wrong_msg_end:
	.align 3
	.size _start, . - _start

	.text

# loader_swppal(pcb: *mut Pcb, pcb_pa: u64, vptb: u64) -> u64
# SWPPAL to OSF/1 PALcode (variant 2) with a1 = the continuation below,
# a2 = the PCB's physical address, a3 = the VPTB, a4 = the kernel stack
# pointer (Linux's switch_to_osf_pal passes it there too). The PCB's ksp is this
# stack pointer, so the new PALcode resumes on the same stack. Registers are
# not trusted across the switch (Linux and aboot save theirs): everything
# callee-saved goes to the stack and comes back at the continuation.
# Returns 0 on success (the continuation ran), else the PALcode's nonzero
# status (SWPPAL returned in place).
LEAF(loader_swppal)
	lda	$30, -96($30)
	stq	$26, 0($30)
	stq	$29, 8($30)
	stq	$9, 16($30)
	stq	$10, 24($30)
	stq	$11, 32($30)
	stq	$12, 40($30)
	stq	$13, 48($30)
	stq	$14, 56($30)
	stq	$15, 64($30)
	stq	$30, 0($16)			# pcb.ksp = this sp
	mov	$30, $20			# a4 = KSP (as Linux passes it)
	mov	$18, $19			# a3 = VPTB
	mov	$17, $18			# a2 = PCB physical address
	br	$17, 3f				# a1 = the next instruction, the continuation
	# continuation: sp = pcb.ksp (our frame), $26 = a1, gp unknown.
	br	$27, 5f
5:	ldgp	$29, 0($27)
	mov	$31, $0
	br	$31, 6f
3:	lda	$16, 2($31)			# OSF/1
	call_pal 0x0a
	# Returned in place: the switch failed, $0 = status (made nonzero).
	lda	$1, 1($31)
	cmoveq	$0, $1, $0
6:	ldq	$26, 0($30)
	ldq	$29, 8($30)
	ldq	$9, 16($30)
	ldq	$10, 24($30)
	ldq	$11, 32($30)
	ldq	$12, 40($30)
	ldq	$13, 48($30)
	ldq	$14, 56($30)
	ldq	$15, 64($30)
	lda	$30, 96($30)
	ret	$31, ($26), 1
END(loader_swppal)

LEAF(loader_halt)
	call_pal 0x00
	br	$31, loader_halt
END(loader_halt)

LEAF(osf_tbia)
	lda	$16, -2($31)
	call_pal 0x33
	ret	$31, ($26), 1
END(osf_tbia)

LEAF(osf_imb)
	call_pal 0x86
	ret	$31, ($26), 1
END(osf_imb)

LEAF(osf_swpipl)			# a0 = new IPL; returns the old one
	call_pal 0x35
	ret	$31, ($26), 1
END(osf_swpipl)

# The trampoline: copied into the staging area's last page and entered
# through KSEG, so it runs from memory that neither the image's pages nor
# the kernel occupy. Position-independent, no stack, no gp.
#   a0 = staged payload (KSEG)   a1 = kernel destination (KSEG)
#   a2 = payload bytes, rounded up to 8
#   a3 = staged parameter page content (KSEG, PARAM_BYTES, PCB at +0x200)
#   a4 = parameter page destination (KSEG)   a5 = kernel entry
# 1. swpctx to the staged PCB, so PALcode's next swpctx saves into memory
#    that stays put (the loader's own PCB may lie where the kernel goes);
# 2. copy the payload, then the parameter page; 3. swpctx to the PCB in the
# parameter page, the one the kernel is given in $18; 4. imb, tbia; enter
# the kernel with $27 = $26 = entry, as QEMU's PALcode does.
	.align 4
	.globl tramp_start
tramp_start:
	mov	$16, $9
	mov	$17, $10
	mov	$18, $11
	mov	$19, $12
	mov	$20, $13
	mov	$21, $14
	lda	$15, -4($31)
	sll	$15, 40, $15			# KSEG base
	lda	$16, 0x200($12)
	subq	$16, $15, $16
	call_pal 0x30				# swpctx(staged PCB)
1:	beq	$11, 2f				# copy the payload
	ldq	$1, 0($9)
	stq	$1, 0($10)
	lda	$9, 8($9)
	lda	$10, 8($10)
	lda	$11, -8($11)
	br	$31, 1b
2:	lda	$11, 0x400($31)			# PARAM_BYTES
	mov	$12, $9
	mov	$13, $10
3:	beq	$11, 4f
	ldq	$1, 0($9)
	stq	$1, 0($10)
	lda	$9, 8($9)
	lda	$10, 8($10)
	lda	$11, -8($11)
	br	$31, 3b
4:	lda	$16, 0x200($13)
	subq	$16, $15, $16
	mov	$16, $18			# the kernel's PCB, physical
	mov	$18, $9
	call_pal 0x30				# swpctx(parameter page PCB)
	call_pal 0x86				# imb: the kernel's code was written
	lda	$16, -2($31)
	call_pal 0x33				# tbia
	mov	$9, $18
	mov	$14, $27
	mov	$14, $26
	jmp	$31, ($27)
	.globl tramp_end
tramp_end:

	.section .bss
	.align 4
loader_stack:
	.skip	131072
	.globl loader_stack_top
loader_stack_top:
