# What libc would provide and GCC/rustc emit calls to: memcpy, memmove,
# memset, memcmp, bcmp, strlen. Alpha C convention: $16-$18 arguments,
# $0 result, $1-$8 and $22-$25, $27, $28 free to clobber.
# Aligned quadword loops where both pointers allow it, bytes otherwise
# (BWX byte loads and stores: EV56 and later).

	.set noreorder
	.set noat
	.text

#define LEAF(name) .align 4; .globl name; .type name, @function; name:
#define END(name) .size name, . - name

# void *memcpy(void *dst $16, const void *src $17, size_t n $18)
LEAF(memcpy)
	mov	$16, $0
	or	$16, $17, $1
	and	$1, 7, $1
	bne	$1, 2f			# misaligned: bytes
1:	cmpult	$18, 8, $1
	bne	$1, 2f
	ldq	$2, 0($17)
	stq	$2, 0($16)
	lda	$17, 8($17)
	lda	$16, 8($16)
	subq	$18, 8, $18
	br	$31, 1b
2:	beq	$18, 3f
	ldbu	$2, 0($17)
	stb	$2, 0($16)
	lda	$17, 1($17)
	lda	$16, 1($16)
	subq	$18, 1, $18
	br	$31, 2b
3:	ret	$31, ($26), 1
END(memcpy)

# void *memmove(void *dst, const void *src, size_t n): copies forward when
# dst <= src or the ranges do not overlap, backward otherwise.
LEAF(memmove)
	cmpule	$16, $17, $1
	bne	$1, memcpy
	addq	$17, $18, $2		# src end
	cmpule	$2, $16, $1
	bne	$1, memcpy
	mov	$16, $0
	addq	$16, $18, $16		# dst end
	mov	$2, $17			# src end
	or	$16, $17, $1
	and	$1, 7, $1
	bne	$1, 2f
1:	cmpult	$18, 8, $1
	bne	$1, 2f
	lda	$17, -8($17)
	lda	$16, -8($16)
	ldq	$2, 0($17)
	stq	$2, 0($16)
	subq	$18, 8, $18
	br	$31, 1b
2:	beq	$18, 3f
	lda	$17, -1($17)
	lda	$16, -1($16)
	ldbu	$2, 0($17)
	stb	$2, 0($16)
	subq	$18, 1, $18
	br	$31, 2b
3:	ret	$31, ($26), 1
END(memmove)

# void *memset(void *dst $16, int c $17, size_t n $18)
LEAF(memset)
	mov	$16, $0
	and	$17, 0xff, $17
	sll	$17, 8, $1
	or	$17, $1, $17
	sll	$17, 16, $1
	or	$17, $1, $17
	sll	$17, 32, $1
	or	$17, $1, $17		# the byte in all eight lanes
1:	and	$16, 7, $1		# bytes up to an aligned address
	beq	$1, 2f
	beq	$18, 4f
	stb	$17, 0($16)
	lda	$16, 1($16)
	subq	$18, 1, $18
	br	$31, 1b
2:	cmpult	$18, 8, $1
	bne	$1, 3f
	stq	$17, 0($16)
	lda	$16, 8($16)
	subq	$18, 8, $18
	br	$31, 2b
3:	beq	$18, 4f
	stb	$17, 0($16)
	lda	$16, 1($16)
	subq	$18, 1, $18
	br	$31, 3b
4:	ret	$31, ($26), 1
END(memset)

# int memcmp(const void *a, const void *b, size_t n): difference of the first
# differing bytes (as unsigned char), 0 if equal. bcmp only promises
# zero/non-zero, so it is the same routine.
LEAF(memcmp)
	mov	$31, $0
1:	beq	$18, 2f
	ldbu	$1, 0($16)
	ldbu	$2, 0($17)
	subq	$1, $2, $0
	bne	$0, 2f
	lda	$16, 1($16)
	lda	$17, 1($17)
	subq	$18, 1, $18
	br	$31, 1b
2:	ret	$31, ($26), 1
END(memcmp)

LEAF(bcmp)
	br	$31, memcmp
END(bcmp)

# size_t strlen(const char *s)
LEAF(strlen)
	mov	$16, $0
1:	ldbu	$1, 0($0)
	beq	$1, 2f
	lda	$0, 1($0)
	br	$31, 1b
2:	subq	$0, $16, $0
	ret	$31, ($26), 1
END(strlen)
