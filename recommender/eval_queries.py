"""Hand-written evaluation queries (our own words; no review or synopsis text is copied).

``LONG_TAIL``: premise-style descriptions of anime that have only one or two
reviews in the shared test data, the kind of anime a popularity vote never
surfaces. ``answers`` holds the MAL id of the described anime, plus the id of a
second entry of the same story where the index has both (two seasons, a film
and its music video), since a user would accept either. Queries whose anime is
not in the index being evaluated are skipped.

``GENRES``: queries that ask for a kind of show; a result agrees when it carries
the MAL genre, theme or demographic label in ``genre``.
"""

from __future__ import annotations

from recommender.eval_sets import LabelledQuery

LONG_TAIL: tuple[LabelledQuery, ...] = tuple(LabelledQuery(text, answers) for text, answers in (
    ("a cursed young prince travels west and is caught in a war between an iron-making town and the gods of the "
     "forest, with a girl raised by wolves", (164,)),
    ("a girl with horns and invisible telekinetic arms escapes from a research lab, loses her memory and is taken "
     "in by two cousins; very violent and tragic", (226,)),
    ("a pop singer falls for a cold, sharp-tongued romance novelist; a boys' love story in the music business",
     (243,)),
    ("girls with halos and small grey wings are born from cocoons in a walled town and must work out what their "
     "dreams and sins mean", (387,)),
    ("a psychiatrist treats patients by entering their dreams with a machine, until stolen devices let a parade "
     "of dreams spill into the waking city", (1943, 40200)),
    ("an indecisive high school boy cheats on his shy girlfriend with the classmate who set them up, and it ends in "
     "murder", (2476,)),
    ("three boys with childhood traumas have out-of-body experiences in a rural mountain town full of spirits",
     (2596,)),
    ("a girl who worked herself to the bone for her childhood friend's idol career is dumped by him and enters show "
     "business for revenge", (4722,)),
    ("high school girls revive the light music club, form a band, and mostly drink tea and eat cake together",
     (5680,)),
    ("mechanics at a small garage tune cars for street races in an old eighties series", (7160,)),
    ("a boy detective commands a giant iron robot in the ruins of postwar Tokyo", (10005,)),
    ("two childhood friends play table tennis, a cold expressionless boy and a cocky prodigy, drawn in a rough "
     "unusual art style", (22135,)),
    ("a piano prodigy who stopped hearing his own playing after his mother died meets a free-spirited violinist",
     (23273,)),
    ("two teenage boys set off bombs in Tokyo and leave riddles for the police in online videos", (23283,)),
    ("a cynical loner in a school volunteer club helps other students while the three club members hide their "
     "feelings", (23847,)),
    ("a perverted boy brought back to life as a devil serves a red-haired club president, fan service and "
     "battles against fallen angels", (24703,)),
    ("a little magical girl trains with her friends for a martial arts tournament", (25939,)),
    ("Japan's self-defense forces march through a portal that opens in Ginza into a fantasy world of dragons and "
     "elves", (28907,)),
    ("humans hide from killer machines in an endless megastructure, and a silent wanderer with a gun searches for "
     "someone carrying the net terminal genes", (32086,)),
    ("a former child soldier becomes a ghostwriter of letters to learn what her commander meant by I love you",
     (33352,)),
    ("young men run a traditional Japanese cafe in a quiet old neighbourhood; gentle and relaxing", (36513,)),
    ("a college freshman moves in above a diving shop and joins a scuba club that mostly drinks and strips",
     (37105,)),
    ("dead girls are brought back as zombies and made to form an idol group to save Saga prefecture",
     (37976, 40174)),
    ("the zombie idol group is buried in debt after a failed concert and has to win back its audience",
     (40174, 37976)),
    ("the battle to retake the outer wall and finally open the basement that holds the secret of the giants",
     (38524,)),
    ("a festival on a pirate island where every famous pirate races for a legendary treasure, a feature film",
     (38234,)),
    ("a poor top student is hired to tutor identical quintuplet sisters who each fall for him, second season",
     (39783, 58755)),
    ("a hero summoned with only a shield is framed for a crime, and travels with a raccoon girl to fight the waves",
     (40356,)),
    ("a young witch travels alone from country to country meeting strangers, and some of the stories are dark",
     (40571,)),
    ("an abused healer turns back time to take revenge on the heroes and princess who used him", (40750,)),
    ("a college student who got dumped rents a girlfriend through an app and has to keep lying to his family",
     (40839,)),
    ("Korean high school fighters enter a martial arts tournament where contestants borrow the powers of gods",
     (41353,)),
    ("a boy hit by a truck is saved by a mysterious girl who will date him only if they marry; sweet newlyweds",
     (41389,)),
    ("a girl in a virtual reality game puts every point into defence and becomes absurdly overpowered",
     (41514,)),
    ("a street kid in a neon megacity gets a military implant in his spine and becomes a mercenary", (42310,)),
    ("a junior girl relentlessly teases a timid senior from the art club until they grow closer", (42361,)),
    ("a poor boy drowning in his dead father's debt merges with his chainsaw devil dog and hunts devils for the "
     "government", (44511,)),
    ("after all humanity was turned to stone, a science genius builds a ship to sail across the ocean", (48549,)),
    ("a human doctor carrying a grimoire that cures cursed vampires, set in steampunk Paris", (48580,)),
    ("a western-style restaurant whose door opens into a fantasy world once a week, feeding elves and dragons",
     (48804,)),
    ("high school girls in a judo club train together and compete", (49376,)),
    ("a former warrior is sold as a slave to a farm and searches for a life without violence", (49387,)),
    ("a hero is summoned a second time to the fantasy world he already saved, years later", (50220,)),
    ("the strongest exorcist of ancient Japan is reincarnated in a world of western magic and hides his power",
     (50932,)),
    ("flashback to the school days of the strongest sorcerer and his best friend who becomes a villain", (51009,)),
    ("a demon slayer travels to the hidden village of swordsmiths to get a new blade forged", (51019,)),
    ("a young girl from a clan of crimson-eyed wizards who only wants to learn explosion magic", (51958,)),
    ("a pacifist gunman with a huge bounty on his head on a desert planet, retold in 3D CG", (52093, 6)),
    ("a woman reborn as a minor character in a novel who is fated to be murdered makes a fake engagement with a "
     "duke", (52308,)),
    ("a gloomy middle school boy who fantasises about killing people falls for the popular model in his class",
     (52578,)),
    ("a bullied boy finds a door to another world in his dead grandfather's house, levels up and becomes handsome "
     "and strong in the real world", (52830,)),
    ("the devil works part-time at a fast food restaurant in Tokyo", (53200,)),
    ("a girl remembers she is the cruel last boss queen of an otome game and spends her life saving the people she "
     "was meant to ruin", (53438,)),
    ("a cheerful boy who sits next to the most feared girl in class wants to be her friend; wholesome elementary "
     "school comedy", (53621,)),
    ("a boy has a crush on the nearsighted girl at the next desk who keeps forgetting her glasses", (54234,)),
    ("teenage soldiers of a persecuted minority pilot spider-like mechs while the republic pretends nobody dies",
     (48569,)),
    ("a jobless man reborn as a mage in a world of magic, heartbroken after his companion leaves him", (51179,)),
    ("two teenagers wander a ruined Japan full of monsters looking for heaven, while children grow up in a sealed "
     "facility", (53393,)),
    ("an overworked office drone is delighted when a zombie apocalypse frees him from his job and writes a bucket "
     "list", (54112,)),
    ("a computer-animated horror film where agents fight zombies on a prison island", (54398,)),
))

GENRES: tuple[LabelledQuery, ...] = tuple(LabelledQuery(text, genre=genre) for text, genre in (
    ("a sweet romance between two classmates who are too shy to confess", "Romance"),
    ("a silly comedy that made me laugh out loud", "Comedy"),
    ("the hero is transported to another world with game-like powers", "Isekai"),
    ("bloody and brutal, people get torn apart", "Gore"),
    ("a psychological cat and mouse game between two geniuses", "Psychological"),
    ("tense and suspenseful, I was on the edge of my seat", "Suspense"),
    ("a sports team trains hard for the national tournament", "Sports"),
    ("a band practising and performing music on stage", "Music"),
    ("travelling back in time to change the past", "Time Travel"),
    ("a harem where several girls fall for the same boy", "Harem"),
    ("soldiers, army ranks and battlefield strategy in a war", "Military"),
    ("relaxing everyday life where nothing dramatic happens", "Slice of Life"),
    ("cooking and delicious food", "Gourmet"),
    ("students, classes and clubs at a high school", "School"),
    ("ghosts, spirits and curses", "Supernatural"),
    ("fighters in a martial arts tournament", "Martial Arts"),
    ("people born with superpowers training to be heroes", "Super Power"),
    ("players trapped in a virtual reality video game", "Video Game"),
    ("a story set in Japan's past, with swords and old traditions", "Historical"),
    ("a romance between coworkers at the office", "Workplace"),
    ("a mystery full of clues and hidden secrets", "Mystery"),
    ("science fiction with spaceships and advanced technology", "Sci-Fi"),
    ("humanity fighting to survive as monsters wipe it out", "Survival"),
    ("grown-up characters with jobs and adult problems", "Adult Cast"),
    ("a parody that mocks typical anime clichés", "Parody"),
    ("reborn as a baby in a new world with memories of a past life", "Reincarnation"),
    ("a heavy tearjerker drama about loss", "Drama"),
    ("swords, sorcery and dragons in a fantasy kingdom", "Fantasy"),
    ("a crew on an epic journey exploring the world", "Adventure"),
    ("non-stop fights and explosive action scenes", "Action"),
    ("scary horror with monsters hiding in the dark", "Horror"),
    ("giant robots piloted in war", "Mecha"),
))
