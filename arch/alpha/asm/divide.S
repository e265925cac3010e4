# GCC's integer division routines for Alpha, which has no divide instruction.
# GCC calls them with a private convention (gcc/config/alpha/alpha.md):
#   dividend in $24, divisor in $25, result in $27, return address in $23;
#   every other register, $24 and $25 included, must be preserved except
#   $28 ($at).
# q-suffixed routines work on 64-bit values, l-suffixed on 32-bit ones
# (result sign-extended to 64 bits, as Alpha keeps 32-bit values).
# Division by zero raises GENTRAP with a0 = -2 (GEN_INTDIV), which reaches
# entIF; Rust code checks for zero before dividing, so it means a bug and the
# kernel panics. Should a handler resume, $16 comes back intact and the
# result is quotient 0, remainder the dividend.
#
# The core is restoring shift-and-subtract division, one quotient bit per
# step, with the remainder's carry-out handled so divisors >= 2^63 work.

	.set noreorder
	.set noat
	.text

# Scratch: $0-$5 saved on the stack (64-byte frame; slot 48 is the signed
# 32-bit routines' sign, slot 56 keeps $16 across a divide-by-zero trap).
#   $1 = n (shifted out), $2 = d, $3 = q, $4 = r, $5 = step count, $0, $28 tmp
	.macro PROLOGUE
	lda	$sp, -64($sp)
	stq	$0, 0($sp)
	stq	$1, 8($sp)
	stq	$2, 16($sp)
	stq	$3, 24($sp)
	stq	$4, 32($sp)
	stq	$5, 40($sp)
	.endm

	.macro EPILOGUE
	ldq	$0, 0($sp)
	ldq	$1, 8($sp)
	ldq	$2, 16($sp)
	ldq	$3, 24($sp)
	ldq	$4, 32($sp)
	ldq	$5, 40($sp)
	lda	$sp, 64($sp)
	ret	$31, ($23), 1
	.endm

	# q = $1 / $2, r = $1 % $2 (unsigned 64-bit) into $3, $4.
	# A zero divisor raises GENTRAP GEN_INTDIV, which must carry -2 in $16;
	# PALcode's frame then holds that -2, not the caller's $16, so $16 is
	# kept in frame slot 56 around the trap. If a handler resumes, the
	# result is defined: quotient 0, remainder the dividend.
	.macro UDIV
	bne	$2, 1f
	stq	$16, 56($sp)
	lda	$16, -2($31)		# GEN_INTDIV
	call_pal 0xaa			# gentrap
	ldq	$16, 56($sp)
	mov	$31, $3
	mov	$1, $4
	br	$31, 4f
1:	mov	$31, $3
	mov	$31, $4
	lda	$5, 64($31)
2:	srl	$4, 63, $28		# carry out of r << 1
	addq	$4, $4, $4
	srl	$1, 63, $0
	or	$4, $0, $4
	addq	$1, $1, $1
	addq	$3, $3, $3
	cmpule	$2, $4, $0
	or	$0, $28, $0
	beq	$0, 3f
	subq	$4, $2, $4
	or	$3, 1, $3
3:	subq	$5, 1, $5
	bne	$5, 2b
4:
	.endm

	# Signed 64-bit: divide the magnitudes, then fix the sign from the
	# untouched inputs $24, $25.
	.macro SDIV want_rem
	subq	$31, $1, $0
	cmovlt	$1, $0, $1		# |n| (|MIN| = 2^63 as unsigned)
	subq	$31, $2, $0
	cmovlt	$2, $0, $2		# |d|
	UDIV
	.if \want_rem
	subq	$31, $4, $0		# remainder takes the dividend's sign
	cmovlt	$24, $0, $4
	mov	$4, $27
	.else
	xor	$24, $25, $28		# quotient negative iff signs differ
	subq	$31, $3, $0
	cmovlt	$28, $0, $3
	mov	$3, $27
	.endif
	.endm

#define LEAF(name) .align 4; .globl name; .type name, @function; name:
#define END(name) .size name, . - name

LEAF(__divqu)
	PROLOGUE
	mov	$24, $1
	mov	$25, $2
	UDIV
	mov	$3, $27
	EPILOGUE
END(__divqu)

LEAF(__remqu)
	PROLOGUE
	mov	$24, $1
	mov	$25, $2
	UDIV
	mov	$4, $27
	EPILOGUE
END(__remqu)

LEAF(__divq)
	PROLOGUE
	mov	$24, $1
	mov	$25, $2
	SDIV 0
	EPILOGUE
END(__divq)

LEAF(__remq)
	PROLOGUE
	mov	$24, $1
	mov	$25, $2
	SDIV 1
	EPILOGUE
END(__remq)

LEAF(__divlu)
	PROLOGUE
	zapnot	$24, 0x0f, $1
	zapnot	$25, 0x0f, $2
	UDIV
	addl	$3, 0, $27
	EPILOGUE
END(__divlu)

LEAF(__remlu)
	PROLOGUE
	zapnot	$24, 0x0f, $1
	zapnot	$25, 0x0f, $2
	UDIV
	addl	$4, 0, $27
	EPILOGUE
END(__remlu)

# 32-bit signed: operate on sign-extended copies and take the signs from
# those copies (the caller's upper halves are not trusted). Stack slot 48
# keeps the result's sign across UDIV, which uses every scratch register.
	.macro ABS12
	subq	$31, $1, $0
	cmovlt	$1, $0, $1
	subq	$31, $2, $0
	cmovlt	$2, $0, $2
	.endm

LEAF(__divl)
	PROLOGUE
	addl	$24, 0, $1
	addl	$25, 0, $2
	xor	$1, $2, $28
	stq	$28, 48($sp)
	ABS12
	UDIV
	ldq	$28, 48($sp)
	subq	$31, $3, $0
	cmovlt	$28, $0, $3
	addl	$3, 0, $27
	EPILOGUE
END(__divl)

LEAF(__reml)
	PROLOGUE
	addl	$24, 0, $1
	addl	$25, 0, $2
	stq	$1, 48($sp)
	ABS12
	UDIV
	ldq	$28, 48($sp)
	subq	$31, $4, $0
	cmovlt	$28, $0, $4
	addl	$4, 0, $27
	EPILOGUE
END(__reml)

# Test harness for the divide-by-zero path (self-test div.zero_divisor):
#   divqu_probe(n: u64, d: u64, sentinel: u64, quotient: *mut u64) -> u64
# calls __divqu(n, d) with $16 = sentinel, stores the quotient and returns
# what $16 holds afterwards (the routine must preserve it).
LEAF(divqu_probe)
	lda	$sp, -16($sp)
	stq	$26, 0($sp)
	stq	$19, 8($sp)
	mov	$16, $24
	mov	$17, $25
	mov	$18, $16
	lda	$27, __divqu
	jsr	$23, ($27)
	ldq	$19, 8($sp)
	stq	$27, 0($19)
	mov	$16, $0
	ldq	$26, 0($sp)
	lda	$sp, 16($sp)
	ret	$31, ($26), 1
END(divqu_probe)
