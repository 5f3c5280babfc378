//! Forenames reduced to one formal name per group of diminutives, for the
//! `forename` field type: "Bill", "Billy" and "Will" become "william";
//! "Kate" and "Katherine" become "catherine". Agency side: it reads
//! normalised plaintext and must never log or return it anywhere but the
//! encoder's buffer.
//!
//! The table was written for bloomlink from general knowledge of
//! English-language forenames (docs/decisions.md §21), not taken from the
//! synthetic generator's list. Groups that share a diminutive are merged
//! ("Sam" joins Samuel and Samantha; sex tells them apart). Diminutives
//! that are common given names in their own right in the UK (Jack, Harry,
//! Liam, Isla, Ella, Millie, Leo, Theo, ...) are left out: mapping them
//! would make unrelated people agree.

/// `(name, formal name of its group)`, sorted by name; lower case ASCII,
/// as the `name` normalisation leaves them. A merged group is named by
/// its alphabetically first formal name (Christopher and Christine share
/// "christine"): the name is only a label that the two sides must agree on.
const TABLE: &[(&str, &str)] = &[
    ("abbie", "abigail"),
    ("abby", "abigail"),
    ("abi", "abigail"),
    ("al", "albert"),
    ("alastair", "alexander"),
    ("alec", "alexander"),
    ("alex", "alexander"),
    ("alexandra", "alexander"),
    ("alf", "alfred"),
    ("alfie", "alfred"),
    ("andy", "andrew"),
    ("ant", "anthony"),
    ("archie", "archibald"),
    ("art", "arthur"),
    ("artie", "arthur"),
    ("babs", "barbara"),
    ("barb", "barbara"),
    ("becca", "rebecca"),
    ("becky", "rebecca"),
    ("bel", "arabella"),
    ("bella", "arabella"),
    ("ben", "benjamin"),
    ("benji", "benjamin"),
    ("benny", "benjamin"),
    ("bernie", "bernard"),
    ("bert", "albert"),
    ("bertie", "albert"),
    ("bess", "elizabeth"),
    ("bessie", "elizabeth"),
    ("beth", "elizabeth"),
    ("bette", "elizabeth"),
    ("betty", "elizabeth"),
    ("bill", "william"),
    ("billy", "william"),
    ("bob", "robert"),
    ("bobby", "robert"),
    ("brad", "bradley"),
    ("caro", "caroline"),
    ("carrie", "caroline"),
    ("cath", "catherine"),
    ("cathy", "catherine"),
    ("charlie", "charles"),
    ("charlotte", "charles"),
    ("chas", "charles"),
    ("chris", "christine"),
    ("chrissie", "christine"),
    ("christopher", "christine"),
    ("chuck", "charles"),
    ("dan", "daniel"),
    ("dani", "daniella"),
    ("danny", "daniel"),
    ("dave", "david"),
    ("davy", "david"),
    ("deb", "deborah"),
    ("debbie", "deborah"),
    ("dick", "richard"),
    ("dolly", "dorothy"),
    ("dom", "dominic"),
    ("don", "donald"),
    ("donnie", "donald"),
    ("dot", "dorothy"),
    ("dottie", "dorothy"),
    ("drew", "andrew"),
    ("ed", "edward"),
    ("eddie", "edward"),
    ("eliza", "elizabeth"),
    ("ellie", "eleanor"),
    ("emmie", "emma"),
    ("emmy", "emily"),
    ("fanny", "frances"),
    ("flo", "florence"),
    ("florrie", "florence"),
    ("fran", "frances"),
    ("francesca", "frances"),
    ("francis", "frances"),
    ("frank", "frances"),
    ("frankie", "frances"),
    ("fred", "alfred"),
    ("freddie", "alfred"),
    ("freddy", "alfred"),
    ("frederick", "alfred"),
    ("gabby", "gabriella"),
    ("gabe", "gabriel"),
    ("gaby", "gabriella"),
    ("geoff", "geoffrey"),
    ("georgie", "george"),
    ("georgina", "george"),
    ("gerry", "gerald"),
    ("gina", "george"),
    ("greg", "gregory"),
    ("hal", "harold"),
    ("hank", "harold"),
    ("hattie", "harriet"),
    ("henry", "harold"),
    ("isabel", "arabella"),
    ("isabella", "arabella"),
    ("issy", "arabella"),
    ("izzy", "arabella"),
    ("jake", "jacob"),
    ("jamie", "james"),
    ("janie", "jane"),
    ("jeff", "geoffrey"),
    ("jen", "jane"),
    ("jennifer", "jane"),
    ("jenny", "jane"),
    ("jess", "jessica"),
    ("jessie", "jessica"),
    ("jim", "james"),
    ("jimmy", "james"),
    ("jo", "joanna"),
    ("joe", "joseph"),
    ("joey", "joseph"),
    ("johnny", "john"),
    ("jon", "jonathan"),
    ("jonny", "jonathan"),
    ("josephine", "joanna"),
    ("josh", "joshua"),
    ("josie", "joanna"),
    ("jude", "judith"),
    ("judy", "judith"),
    ("kat", "catherine"),
    ("kate", "catherine"),
    ("katherine", "catherine"),
    ("kathy", "catherine"),
    ("katie", "catherine"),
    ("ken", "kenneth"),
    ("kenny", "kenneth"),
    ("kim", "kimberley"),
    ("larry", "lawrence"),
    ("laurie", "lawrence"),
    ("len", "leonard"),
    ("lenny", "leonard"),
    ("lexi", "alexander"),
    ("lexie", "alexander"),
    ("libby", "elizabeth"),
    ("liz", "elizabeth"),
    ("lizzie", "elizabeth"),
    ("lotte", "charles"),
    ("lottie", "charles"),
    ("lou", "louisa"),
    ("louise", "louisa"),
    ("lucy", "lucinda"),
    ("maddie", "madeleine"),
    ("maddy", "madeleine"),
    ("madge", "margaret"),
    ("maggie", "margaret"),
    ("marge", "margaret"),
    ("matt", "matthew"),
    ("matty", "matthew"),
    ("meg", "margaret"),
    ("mick", "michael"),
    ("mickey", "michael"),
    ("mike", "michael"),
    ("mikey", "michael"),
    ("nat", "nathan"),
    ("nate", "nathan"),
    ("nathaniel", "nathan"),
    ("ned", "edward"),
    ("nell", "eleanor"),
    ("nellie", "eleanor"),
    ("nick", "nicholas"),
    ("nicky", "nicholas"),
    ("nicola", "nicholas"),
    ("nikki", "nicholas"),
    ("ollie", "oliver"),
    ("olly", "oliver"),
    ("paddy", "patricia"),
    ("pat", "patricia"),
    ("patrick", "patricia"),
    ("patsy", "patricia"),
    ("peggy", "margaret"),
    ("penny", "penelope"),
    ("pete", "peter"),
    ("phil", "philip"),
    ("phillip", "philip"),
    ("pip", "philip"),
    ("rich", "richard"),
    ("rick", "richard"),
    ("ricky", "richard"),
    ("rob", "robert"),
    ("robbie", "robert"),
    ("ron", "ronald"),
    ("ronnie", "ronald"),
    ("ros", "rosalind"),
    ("rosie", "rosemary"),
    ("sadie", "sarah"),
    ("sally", "sarah"),
    ("sam", "samantha"),
    ("sammy", "samantha"),
    ("samuel", "samantha"),
    ("sandy", "alexander"),
    ("sasha", "alexander"),
    ("sophie", "sophia"),
    ("steve", "stephen"),
    ("steven", "stephen"),
    ("stevie", "stephen"),
    ("sue", "susan"),
    ("susie", "susan"),
    ("ted", "edward"),
    ("teddy", "edward"),
    ("terry", "terence"),
    ("theodore", "edward"),
    ("tilda", "matilda"),
    ("tilly", "matilda"),
    ("tim", "timothy"),
    ("timmy", "timothy"),
    ("tom", "thomas"),
    ("tommy", "thomas"),
    ("toni", "antonia"),
    ("tony", "anthony"),
    ("topher", "christine"),
    ("tori", "victoria"),
    ("trish", "patricia"),
    ("val", "valerie"),
    ("vicki", "victoria"),
    ("vicky", "victoria"),
    ("vince", "vincent"),
    ("vinnie", "vincent"),
    ("wally", "walter"),
    ("walt", "walter"),
    ("will", "william"),
    ("willie", "william"),
    ("xander", "alexander"),
    ("zach", "zachary"),
    ("zack", "zachary"),
];

/// The formal name of `name`'s group, if the table holds it (`name` as
/// normalised: lower case, accents stripped).
pub fn formal(name: &str) -> Option<&'static str> {
    TABLE
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| TABLE[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_maps_to_formal_names_only() {
        for w in TABLE.windows(2) {
            assert!(w[0].0 < w[1].0, "{} before {}", w[0].0, w[1].0);
        }
        for (name, formal) in TABLE {
            assert_ne!(name, formal);
            // A formal name is its own group's name: it never maps on.
            assert!(TABLE.iter().all(|(n, _)| n != formal), "{formal} maps on");
            assert!(name.bytes().all(|b| b.is_ascii_lowercase()), "{name}");
        }
    }

    #[test]
    fn diminutives_and_spellings_meet_and_others_pass_through() {
        assert_eq!(formal("bill"), Some("william"));
        assert_eq!(formal("will"), Some("william"));
        assert_eq!(formal("william"), None);
        assert_eq!(formal("kate"), formal("katherine"));
        assert_eq!(formal("kate"), Some("catherine"));
        assert_eq!(formal("peggy"), Some("margaret"));
        for standalone in [
            "jack", "harry", "liam", "isla", "ella", "millie", "amelia", "",
        ] {
            assert_eq!(formal(standalone), None, "{standalone}");
        }
    }
}
