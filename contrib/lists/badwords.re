# badwords.re — phrases that are almost only ever seen in spam (a regex list).
# Rules "body-badwords" and "subject-badwords" in rules/30-content.rules add
# to the score when ANY pattern here matches; a match alone never refuses
# mail. All patterns of the list run in one pass over the text.
#
# One RE2 pattern per line (https://github.com/google/re2/wiki/Syntax), either
# bare or written /pattern/flags with flags i (ignore case), m (^ and $ match
# at line ends), s (. matches a newline). Only whole lines can be comments
# here, because '#' is an ordinary character in a pattern. Patterns search
# anywhere in the text; RE2 has no look-ahead and no back-references.
#
# Keep patterns specific: a word that also appears in normal mail (e.g.
# "invoice", "password") belongs in a scored rule with more context, not here.

# Pharmacy spam, including the usual digit-for-letter spellings (v1agra).
/\bv[i1!|]agra\b/i
# The same for cialis (c1alis, cial1s).
/\bc[i1!|]al[i1!|]s\b/i
# "cheap meds", "generic pills", "discount pharmacy", "no prescription rx".
/\b(cheap|discount|generic|no\s+prescription)\s+(meds|pills|pharmacy|rx|viagra|cialis)\b/i
# Advance-fee fraud ("419"): inheritance and next-of-kin stories.
/\b(next\s+of\s+kin|unclaimed\s+(fund|inheritance)|deceased\s+client)\b/i
# Advance-fee fraud: "transfer of (US)$12,500,000".
/\b(transfer|sum|fund)\s+of\s+(us)?\$?\s?\d{1,3}([,.]\d{3}){2,}/i
# Lottery scams: "you have won", "your email was selected".
/\b(you\s+have\s+(won|been\s+selected)|your\s+e-?mail\s+(address\s+)?(has\s+)?won)\b/i
# Prize claims: "claim your prize", "collect your winnings".
/\b(claim|collect)\s+your\s+(prize|winnings|reward|award)\b/i
# Sextortion: "I recorded you", "I have access to your device".
/\bi\s+(have\s+)?(recorded|hacked)\s+(you|your\s+(device|computer|account))\b/i
# Sextortion and ransom notes asking for bitcoin.
/\b(send|pay|transfer)\b.{0,40}\b(bitcoin|btc)\b.{0,40}\b(wallet|address)\b/i
# "100% free", "100% guaranteed", "risk-free".
/\b100\s?%\s+(free|guaranteed|satisfied)\b/i
# Work-from-home and get-rich offers: "earn $5,000 per week".
/\bearn\s+(up\s+to\s+)?\$\s?\d[\d,]*\s+(a|per)\s+(day|week|month)\b/i
